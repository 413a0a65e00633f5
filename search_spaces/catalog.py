"""Names the spec layer validates without importing torch, and each training method's reference defaults.

The worker registries (workers.methods, workers.data, workers.attacks) are the source of truth at run time;
tests/search_spaces/test_catalog.py asserts these tables name exactly what the registries hold.
"""

from __future__ import annotations

from typing import Any

# Reference defaults per training method (science.md section 4). Applied by the spec expansion only where the
# user left the field unset, so an explicit value always wins.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "clean": {"eps": 0.0},
    "sat": {"lam": 1.0},  # Madry et al.: train on the PGD example only
    "gat": {"lam": 1.0},  # generalised AT, lambda grid 1.0..2.0
    "trades": {"lam": 6.0, "train_attack": {"step_size": 0.007, "start": "normal"}},
    "mart": {"lam": 6.0, "train_attack": {"step_size": 0.007, "start": "uniform"}},
    "fgsm": {"train_attack": {"name": "fgsm", "steps": 1, "step_size": 10 / 255, "start": "uniform"}},
    "war_gat": {"lam": 0.0, "zeta": 1.0},
    "war_trades": {"lam": 0.0, "zeta": 1.0, "train_attack": {"step_size": 0.007, "start": "normal"}},
}

DATASETS: dict[str, dict[str, int]] = {
    # name: classes, channels, image size, train images (before the validation split)
    "cifar10": {"num_classes": 10, "channels": 3, "image_size": 32, "n_train": 50_000},
    "cifar10-jpeg": {"num_classes": 10, "channels": 3, "image_size": 32, "n_train": 50_000},
    "cifar100": {"num_classes": 100, "channels": 3, "image_size": 32, "n_train": 50_000},
    "svhn": {"num_classes": 10, "channels": 3, "image_size": 32, "n_train": 73_257},
    "imagefolder": {"num_classes": 10, "channels": 3, "image_size": 32, "n_train": 0},
    "synthetic": {"num_classes": 10, "channels": 3, "image_size": 32, "n_train": 2_560},
}
# datasets read from a local directory (the data root must exist); torchvision sets download when online
DISK_DATASETS = frozenset({"cifar10-jpeg", "imagefolder"})

EVAL_ATTACKS = ("pgd", "fgsm", "cw", "autoattack")


def known(names: dict[str, Any] | tuple[str, ...] | frozenset[str]) -> str:
    return ", ".join(sorted(names))
