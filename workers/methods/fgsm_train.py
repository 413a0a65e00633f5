"""FGSM adversarial training with a random start ('Fast is better than free', Wong et al., 2020)."""

from __future__ import annotations

from torch import Tensor, nn

from workers.attacks.fgsm import FGSM
from workers.methods.base import MethodContext, MethodOutput, train_on_adversarial
from workers.methods.registry import register_method


@register_method("fgsm")
def fgsm_train(model: nn.Module, x: Tensor, y: Tensor, ctx: MethodContext) -> MethodOutput:
    """L(x') with x' one FGSM step of ctx.step_size (Wong et al.: 1.25 * eps) from ctx.start (Wong et al.:
    uniform), projected onto the ball; builds its own FGSM whatever ctx.attack is.
    [https://arxiv.org/abs/2001.03994]"""
    attack = FGSM(eps=ctx.eps, norm=ctx.norm, step_size=ctx.step_size, start=ctx.start)
    return train_on_adversarial(model, x, y, ctx, attack)
