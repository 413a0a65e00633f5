"""TRADES' inner maximisation: PGD on KL(p || softmax f(x')) towards fixed clean probabilities p (not registered:
it needs p, which TRADES computes per batch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.attacks.pgd import PGD, _per_example_norm, ascent_step, project, start_point
from workers.attacks.registry import GradHook


def kl_to(p: Tensor, logits: Tensor) -> Tensor:
    """KL(p || softmax logits) per example, (B, K), (B, K) -> (B,); p log p is 0 where p is 0."""
    return (torch.xlogy(p, p) - p * F.log_softmax(logits, dim=1)).sum(1)


@dataclass
class TradesKL(PGD):
    r"""
    The adversarial example of 'Theoretically Principled Trade-off between Robustness and Accuracy' (Zhang et al.,
    2019) [https://arxiv.org/abs/1901.08573], as github.com/yaodongyu/TRADES `trades.py` generates it.

    Distance Measure : Linf or L2

    Arguments:
        eps, steps, step_size, start: as PGD (TRADES: 10 steps, 0.007 at 8/255, start 'normal').
        norm (str): 'linf': sign steps on the KL, projected onto the ball then the box (the reference's l_inf
            branch). 'l2': the reference's l_2 branch: delta = 0.001 N(0, 1) (start 'normal'; other starts as PGD),
            then per step SGD with lr `step_size` (the reference: 2 eps / steps) on -KL with the gradient
            renormalised per example (a random direction where it is 0), x + delta clamped to [0, 1] and delta
            renormed into the ball (torch.renorm, as the reference).
        target (Tensor): p, the clean softmax (B, K) the KL is measured against (no gradient).

    Call: attack(model, x, y, grad_hook=None) -> x_adv
        - y: (B,) the true labels. The attack maximises the KL and never uses y for its steps; grad_hook(g)
          receives g = the input gradient of the summed cross-entropy CE(f(x_k), y) at each iterate x_k (one more
          backward per step, only when a hook is given), so the local Lipschitz logged along TRADES' attack is the
          same quantity as every other method's (science.md).
        - the model's mode is left as it is; only input gradients are computed. Works under torch.autocast.
    """

    target: Tensor = field(default_factory=lambda: torch.empty(0))

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, grad_hook: GradHook | None = None) -> Tensor:
        x = x.detach()
        if self.eps == 0:
            return x
        assert self.step_size is not None
        if self.norm == "l2" and self.start == "normal":
            x_adv = x + 0.001 * torch.randn_like(x)  # the reference's unprojected start
        else:
            x_adv = start_point(x, self.eps, self.norm, self.start)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            with torch.enable_grad():
                logits = model(x_adv).float()  # (B, K)
                kl = kl_to(self.target, logits).sum()
                (grad,) = torch.autograd.grad(kl, x_adv, retain_graph=grad_hook is not None)
                if grad_hook is not None:
                    (ce_grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x_adv)
                    grad_hook(ce_grad)
            x_adv = self._step(x_adv.detach(), grad, x)
        return x_adv.detach()

    def _step(self, x_adv: Tensor, grad: Tensor, x: Tensor) -> Tensor:
        assert self.step_size is not None
        if self.norm == "linf":
            return project(ascent_step(x_adv, grad, self.step_size, "linf"), x, self.eps, "linf")
        norms = _per_example_norm(grad, 2)  # (B, 1, 1, 1)
        direction = torch.where(norms == 0, torch.randn_like(grad), grad / norms.clamp_min(1e-30))
        delta = (x_adv + self.step_size * direction).clamp(0.0, 1.0) - x
        return x + delta.renorm(p=2, dim=0, maxnorm=self.eps)
