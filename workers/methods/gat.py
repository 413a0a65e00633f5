"""Generalised adversarial training: L(x) + lambda * max(L(x') - L(x), 0)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from workers.methods.base import MethodContext, MethodOutput, run_attack
from workers.methods.registry import register_method


@dataclass
class Terms:
    """The two terms of a regularised objective l_nat + lambda * l_rob, with what the output reports."""

    l_nat: Tensor  # scalar with gradient
    l_rob: Tensor  # scalar with gradient
    local_lipschitz: Tensor | float | None
    clean_logits: Tensor  # (B, K) fp32, with gradient
    adv_logits: Tensor

    def output(self, lam: float) -> MethodOutput:
        return MethodOutput(loss=self.l_nat + lam * self.l_rob, natural_risk=self.l_nat.detach(),
                            robust_reg=self.l_rob.detach(), lam=lam, local_lipschitz=self.local_lipschitz,
                            clean_logits=self.clean_logits.detach(), adv_logits=self.adv_logits.detach())


def gat_terms(model: nn.Module, x: Tensor, y: Tensor, ctx: MethodContext) -> Terms:
    """l_nat = mean L(x); l_rob = mean over examples of max(L(x') - L(x), 0), clipped per example (the objective
    of science.md is per example). Clean and adversarial batches are forwarded separately in the caller's mode."""
    x_adv, lip = run_attack(model, x, y, ctx)
    clean_logits = model(x).float()  # (B, K)
    adv_logits = model(x_adv).float()
    l_clean = F.cross_entropy(clean_logits, y, reduction="none")  # (B,)
    l_adv = F.cross_entropy(adv_logits, y, reduction="none")
    return Terms(l_clean.mean(), (l_adv - l_clean).clamp(min=0.0).mean(), lip, clean_logits, adv_logits)


@register_method("gat")
def gat(model: nn.Module, x: Tensor, y: Tensor, ctx: MethodContext) -> MethodOutput:
    """L(x) + ctx.lam * max(L(x') - L(x), 0), x' = ctx.attack(x) in ctx.bn_mode (lambda grid 1 .. 2)."""
    return gat_terms(model, x, y, ctx).output(ctx.lam)
