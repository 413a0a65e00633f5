"""FGSM: one signed-gradient step, optionally from a random start (Wong et al.'s fast adversarial training)."""

from __future__ import annotations

from dataclasses import dataclass

from workers.attacks.pgd import PGD
from workers.attacks.registry import register_attack


@register_attack("fgsm")
@dataclass
class FGSM(PGD):
    r"""
    FGSM in the paper 'Explaining and Harnessing Adversarial Examples' (Goodfellow et al., 2015)
    [https://arxiv.org/abs/1412.6572]; with start='uniform' and step_size=1.25*eps it is the FGSM-RS of 'Fast is
    better than free: Revisiting adversarial training' (Wong et al., 2020) [https://arxiv.org/abs/2001.03994].

    Distance Measure : Linf (or L2: one normalised-gradient step)

    Arguments:
        eps (float): radius, [0, 1] pixel units.
        norm (str): 'linf' | 'l2'.
        steps (int): ignored, always 1.
        step_size (float | None): step length; None -> eps (plain FGSM). Wong et al.: 1.25 * eps.
        start (str): 'none' (Goodfellow) | 'uniform' (Wong et al.) | 'normal'.

    Call and shapes: as PGD (x (B, C, H, W) in [0, 1], y (B,) -> detached x_adv (B, C, H, W) in the ball).

    Examples::
        >>> attack = make_attack("fgsm", eps=8/255, step_size=1.25 * 8/255, start="uniform")  # FGSM-RS
        >>> x_adv = attack(model, x, y)
    """

    def __post_init__(self) -> None:
        self.steps = 1
        if self.step_size is None:
            self.step_size = self.eps
