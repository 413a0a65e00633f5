"""AutoAttack (standard version) through the `pyautoattack` package, imported when the attack is first called."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from workers.attacks.registry import GradHook, register_attack

_AA_NORMS = {"linf": "Linf", "l2": "L2"}


@contextmanager
def _frozen_parameters(model: nn.Module) -> Iterator[None]:
    """FAB calls .backward(): turn off requires_grad so that no weight gradient is ever accumulated."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@register_attack("autoattack")
@dataclass
class AutoAttack:
    r"""
    AutoAttack in the paper 'Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks' (Croce and Hein, 2020) [https://arxiv.org/abs/2003.01690]: APGD-CE, APGD-T (9 target
    classes), FAB-T and Square (5000 queries), each run on the points still robust (version 'standard').

    Distance Measure : Linf or L2

    Arguments:
        eps (float): radius, [0, 1] pixel units. eps == 0 returns x.
        norm (str): 'linf' | 'l2'.
        steps, step_size, start: ignored (AutoAttack's hyperparameters are fixed by design).
        attacks (tuple[str, ...] | None): None -> version 'standard'; otherwise version 'custom' with these
            pyautoattack names, e.g. ('apgd-ce', 'apgd-t') for a cheaper check.

    Call: attack(model, x, y, grad_hook=None) -> x_adv
        - x: (B, C, H, W) in [0, 1]; y: (B,); returns detached (B, C, H, W) in the ball and in [0, 1].
        - grad_hook is never called. The model's mode is left as it is (evaluate in eval mode); parameters have
          requires_grad switched off during the call. pyautoattack re-seeds torch's RNG: it runs inside
          torch.random.fork_rng with a seed drawn from the caller's RNG, so the caller's stream is deterministic.

    Needs `pip install robustgrid[autoattack]` (pyautoattack==0.2.0).

    Examples::
        >>> attack = make_attack("autoattack", eps=8/255)
        >>> x_adv = attack(model, x, y)
    """

    eps: float
    norm: str = "linf"
    steps: int = 100
    step_size: float | None = None
    start: str = "uniform"
    attacks: tuple[str, ...] | None = None

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, grad_hook: GradHook | None = None) -> Tensor:
        # contiguous: pyautoattack .view()s its gradients, which fails on a channels_last batch (the trainer's layout)
        x = x.detach().contiguous()
        if self.eps == 0:
            return x
        try:
            from pyautoattack import AutoAttack as _AA
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the 'autoattack' attack needs the pyautoattack package: pip install robustgrid[autoattack]"
            ) from e

        def logits(z: Tensor) -> Tensor:  # fp32 logits under autocast
            return model(z).float()

        version = "standard" if self.attacks is None else "custom"
        attacks = None if self.attacks is None else list(self.attacks)
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # drawn from the caller's RNG
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), _frozen_parameters(model):
            aa = _AA(logits, attacks=attacks, device=x.device, eps=self.eps, norm=_AA_NORMS[self.norm], seed=seed,
                     version=version)
            aa.verbose = False
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=len(x))
        return x_adv.detach()
