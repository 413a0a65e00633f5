"""Projected gradient descent, and the ball geometry (start, step, projection) the other attacks share."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from search_spaces.config import reference_step_size
from workers.attacks.registry import GradHook, register_attack


def _per_example_norm(t: Tensor, p: float) -> Tensor:
    """(B, ...) -> (B, 1, ..., 1): the p-norm of each example, broadcastable against t."""
    return t.flatten(1).norm(p=p, dim=1).view(-1, *([1] * (t.dim() - 1)))


def project(x_adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Project x_adv onto B(x, eps) and then onto the image box [0, 1] (clamping never leaves the ball)."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:  # l2: scale down the examples outside the ball
        delta = delta * (eps / _per_example_norm(delta, 2).clamp_min(1e-12)).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0)


def start_point(x: Tensor, eps: float, norm: str, start: str) -> Tensor:
    """uniform: uniform in B(x, eps); normal: x + 0.001 * N(0, 1) (TRADES); none: x. Always projected."""
    if start == "none":
        return x.clone()
    if start == "normal":
        return project(x + 0.001 * torch.randn_like(x), x, eps, norm)
    if norm == "linf":
        return project(x + torch.empty_like(x).uniform_(-eps, eps), x, eps, norm)
    # l2: uniform in the ball = uniform direction x radius eps * U^(1/d)
    d = x[0].numel()
    direction = torch.randn_like(x)
    direction = direction / _per_example_norm(direction, 2).clamp_min(1e-12)
    radius = eps * torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device, dtype=x.dtype) ** (1.0 / d)
    return project(x + radius * direction, x, eps, norm)


def ascent_step(x_adv: Tensor, grad: Tensor, step_size: float, norm: str) -> Tensor:
    """Steepest ascent for the norm: sign of the gradient (linf) or the normalised gradient (l2)."""
    if norm == "linf":
        return x_adv + step_size * grad.sign()
    return x_adv + step_size * grad / _per_example_norm(grad, 2).clamp_min(1e-12)


@register_attack("pgd")
@dataclass
class PGD:
    r"""
    PGD in the paper 'Towards Deep Learning Models Resistant to Adversarial Attacks' (Madry et al., 2018)
    [https://arxiv.org/abs/1706.06083], on the cross-entropy loss.

    Distance Measure : Linf or L2

    Arguments:
        eps (float): radius of the ball, [0, 1] pixel units. eps == 0 returns x.
        norm (str): 'linf' (sign steps) or 'l2' (normalised-gradient steps).
        steps (int): number of gradient steps (one forward and one input-gradient each).
        step_size (float | None): pixel units per step; None -> eps / 10 (linf) or 2.5 * eps / steps (l2).
        start (str): 'uniform' in the ball | 'normal' x + 0.001 * N(0, 1) (TRADES) | 'none' x itself.

    Call: attack(model, x, y, grad_hook=None) -> x_adv
        - model: any module; its train/eval mode is left as it is (the caller chooses the BN mode) and no weight
          gradient is computed (only torch.autograd.grad w.r.t. the input).
        - x: (B, C, H, W) in [0, 1];  y: (B,) labels.
        - grad_hook(g): called at every step with g (B, C, H, W), the gradient of the summed per-example loss,
          so row b is grad_x L(x_b) of that example alone.
        - returns: detached (B, C, H, W) in B(x, eps) and in [0, 1].

    Works under torch.autocast: the loss is computed on `logits.float()`.

    Examples::
        >>> attack = make_attack("pgd", eps=8/255, steps=20)   # step eps/10, uniform start
        >>> x_adv = attack(model, x, y)
    """

    eps: float
    norm: str = "linf"
    steps: int = 10
    step_size: float | None = None
    start: str = "uniform"

    def __post_init__(self) -> None:
        if self.step_size is None:
            self.step_size = reference_step_size(self.eps, self.norm, self.steps)

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """Per-example loss to maximise: (B, K) fp32 logits, targets -> (B,)."""
        return F.cross_entropy(logits, y, reduction="none")

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, grad_hook: GradHook | None = None) -> Tensor:
        x = x.detach()
        if self.eps == 0:
            return x
        assert self.step_size is not None
        x_adv = start_point(x, self.eps, self.norm, self.start)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                loss = self.loss(model(x_adv).float(), y).sum()
            (grad,) = torch.autograd.grad(loss, x_adv)
            if grad_hook is not None:
                grad_hook(grad)
            x_adv = project(ascent_step(x_adv.detach(), grad, self.step_size, self.norm), x, self.eps, self.norm)
        return x_adv.detach()

