"""Attack registry: an attack is a class registered by name, built with `make_attack` and called with the model.

    atk = make_attack("pgd", eps=8 / 255, norm="linf", steps=20)
    x_adv = atk(model, x, y)          # (B, C, H, W) in [0, 1] -> detached (B, C, H, W) in the eps-ball and [0, 1]

The model is an argument of the call, not of the constructor, because it changes during training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor, nn

GradHook = Callable[[Tensor], None]  # called with the input gradient (B, C, H, W) at every attack step

NORMS = ("linf", "l2")
STARTS = ("uniform", "normal", "none")


class Attack(Protocol):
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, grad_hook: GradHook | None = None) -> Tensor: ...


class AttackFactory(Protocol):
    def __call__(
        self, *, eps: float, norm: str, steps: int, step_size: float | None, start: str, **options: Any
    ) -> Attack: ...


_ATTACKS: dict[str, AttackFactory] = {}


def register_attack(name: str) -> Callable[[AttackFactory], AttackFactory]:
    """Class decorator: `@register_attack("pgd")` makes the class buildable by `make_attack("pgd", ...)`."""

    def deco(factory: AttackFactory) -> AttackFactory:
        if name in _ATTACKS:
            raise ValueError(f"attack '{name}' is already registered")
        _ATTACKS[name] = factory
        return factory

    return deco


def list_attacks() -> list[str]:
    return sorted(_ATTACKS)


def make_attack(
    name: str,
    *,
    eps: float,  # radius, [0, 1] pixel units
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,  # pixel units per step; None: the attack's default (eps/10 for PGD and CW)
    start: str = "uniform",
    **options: Any,  # the attack's own fields, e.g. kappa for cw
) -> Attack:
    if name not in _ATTACKS:
        raise ValueError(f"unknown attack '{name}'; known: {', '.join(list_attacks())}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm '{norm}'; known: {', '.join(NORMS)}")
    if start not in STARTS:
        raise ValueError(f"unknown start '{start}'; known: {', '.join(STARTS)}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    factory = _ATTACKS[name]
    own = _own_options(factory)
    bad = [k for k in options if k not in own]
    if bad:
        raise ValueError(f"attack '{name}' takes no option '{bad[0]}'; its options: {', '.join(own) or 'none'}")
    return factory(eps=eps, norm=norm, steps=steps, step_size=step_size, start=start, **options)


def _own_options(factory: AttackFactory) -> list[str]:
    """The dataclass fields of an attack beyond the shared ones (eps, norm, steps, step_size, start)."""
    shared = {"eps", "norm", "steps", "step_size", "start"}
    if not dataclasses.is_dataclass(factory):
        return []
    return [f.name for f in dataclasses.fields(factory) if f.name not in shared]
