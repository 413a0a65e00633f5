"""CW-inf: PGD on the Carlini-Wagner margin loss."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from workers.attacks.pgd import PGD
from workers.attacks.registry import register_attack


def cw_margin_loss(logits: Tensor, y: Tensor, kappa: float) -> Tensor:
    """-max(z_y - max_{j != y} z_j + kappa, 0) per example, (B, K), (B,) -> (B,); maximal (0) once the best wrong
    logit beats the true one by kappa. As `cw_loss` in the TRADES / MART / Rice et al. evaluation code."""
    real = logits.gather(1, y[:, None]).squeeze(1)  # (B,)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)  # (B,) best wrong logit
    return -(real - other + kappa).clamp(min=0.0)


@register_attack("cw")
@dataclass
class CW(PGD):
    r"""
    CW-inf: PGD on the margin loss of 'Towards Evaluating the Robustness of Neural Networks' (Carlini and Wagner,
    2017) [https://arxiv.org/abs/1608.04644], as used for evaluation by TRADES, MART and Rice et al. (2020).

    Distance Measure : Linf (CW-inf) or L2

    Arguments:
        eps, norm, steps, step_size (None -> eps / 10), start: as PGD.
        kappa (float): confidence margin of the loss, logits units; TrialConfig.eval_attack.kappa. (Default: 50,
            the reference value)

    Call and shapes: as PGD (x (B, C, H, W) in [0, 1], y (B,) -> detached x_adv (B, C, H, W)).

    Examples::
        >>> attack = make_attack("cw", eps=8/255, steps=20, kappa=50.0)
        >>> x_adv = attack(model, x, y)
    """

    kappa: float = 50.0

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        return cw_margin_loss(logits, y, self.kappa)
