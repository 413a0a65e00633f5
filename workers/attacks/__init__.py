"""Adversarial attacks, one per file, looked up by name: `make_attack(name, eps=..., ...)(model, x, y) -> x_adv`."""

from workers.attacks import autoattack, cw, fgsm, pgd  # noqa: F401  (registers the attacks)
from workers.attacks.registry import Attack, GradHook, list_attacks, make_attack, register_attack

__all__ = ["Attack", "GradHook", "list_attacks", "make_attack", "register_attack"]
