"""Standard adversarial training (Madry et al., 2018): train on the PGD example only, L(f(x'), y)."""

from __future__ import annotations

from torch import Tensor, nn

from workers.methods.base import MethodContext, MethodOutput, train_on_adversarial
from workers.methods.registry import register_method


@register_method("sat")
def sat(model: nn.Module, x: Tensor, y: Tensor, ctx: MethodContext) -> MethodOutput:
    """L(x') with x' = ctx.attack(x) in ctx.bn_mode; natural_risk L(x), robust_reg L(x') - L(x), lam 1.
    'Towards Deep Learning Models Resistant to Adversarial Attacks' [https://arxiv.org/abs/1706.06083]."""
    return train_on_adversarial(model, x, y, ctx)
