"""Names the spec layer validates without importing torch, and each training method's reference defaults.

The worker registries (workers.methods, workers.data, workers.attacks) are the source of truth at run time;
tests/search_spaces/test_catalog.py asserts these tables name exactly what the registries hold.
"""

from __future__ import annotations

from typing import Any

TRADES_STEP = 0.007 / (8 / 255)  # TRADES' and MART's step 0.007 at their eps 8/255, as a multiple of eps (0.2231)

# Reference defaults per training method (science.md section 4). Applied by the spec expansion only where the
# user left the field unset, so an explicit value always wins (an absolute train_attack.step_size beats step_rel).
# Steps are relative to eps so that they follow the eps grid and the norm (TrialConfig's own default: eps/4).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "clean": {"eps": 0.0},
    "sat": {"lam": 1.0},  # Madry et al.: train on the PGD example only
    "gat": {"lam": 1.0},  # generalised AT, lambda grid 1.0..2.0
    # TRADES' L2 branch: SGD with lr 2 eps / steps on the normalised gradient (0.2 eps at its 10 steps)
    "trades": {"lam": 6.0, "train_attack": {"step_rel": TRADES_STEP, "step_rel_l2": 0.2, "start": "normal"}},
    "mart": {"lam": 6.0, "train_attack": {"step_rel": TRADES_STEP, "start": "normal"}},  # MART: x + 0.001 N(0,1)
    # Wong et al.'s FGSM-RS: step 1.25 eps from a uniform start, generated with BN in train mode
    "fgsm": {"train_attack": {"name": "fgsm", "steps": 1, "step_rel": 1.25, "start": "uniform"},
             "bn_mode_attack": "train"},
    "war_gat": {"lam": 0.0, "zeta": 1.0},
    "war_trades": {"lam": 0.0, "zeta": 1.0,
                   "train_attack": {"step_rel": TRADES_STEP, "step_rel_l2": 0.2, "start": "normal"}},
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
