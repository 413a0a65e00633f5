"""Standard (clean, eps = 0) training: cross-entropy on the clean batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.methods.base import MethodContext, MethodOutput
from workers.methods.registry import register_method


@register_method("clean")
def clean(model: nn.Module, x: Tensor, y: Tensor, ctx: MethodContext) -> MethodOutput:
    """L(f(x), y); no attack, robust_reg 0, lam 0."""
    logits = model(x).float()  # (B, K)
    loss = F.cross_entropy(logits, y)
    return MethodOutput(loss=loss, natural_risk=loss.detach(), robust_reg=torch.zeros((), device=loss.device),
                        lam=0.0, local_lipschitz=None, clean_logits=logits.detach(), adv_logits=None)
