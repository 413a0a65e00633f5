"""The optimiser (SGD) and the learning-rate schedules as a pure function of the epoch.

Epochs are 0-indexed: `lr_at(0, ...)` is the rate of the first epoch. A piecewise milestone m (an epoch number,
or a fraction f of the epochs with m = f * epochs) applies from the first epoch index >= m, as torch's MultiStepLR
stepped once per epoch: with milestones (0.75, 0.9) of 100 epochs, epochs 0-74 use lr, 75-89 lr*0.1, 90-99 lr*0.01.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from search_spaces.config import ScheduleConfig


def make_optimizer(model: nn.Module, *, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """SGD over all parameters, weight decay on all of them (as the reference code)."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def milestone_epochs(schedule: ScheduleConfig, epochs: int) -> list[float]:
    """Milestones as epoch numbers: fractions of `epochs` when all are <= 1, epoch numbers otherwise."""
    ms = schedule.milestones
    return [m * epochs for m in ms] if all(m <= 1 for m in ms) else [float(m) for m in ms]


def validate_schedule(schedule: ScheduleConfig, epochs: int) -> None:
    """Raise ValueError when a piecewise milestone lies outside (0, epochs) (it would never, or always, apply)."""
    if schedule.kind != "piecewise":
        return
    for m, e in zip(schedule.milestones, milestone_epochs(schedule, epochs), strict=True):
        if not 0 < e < epochs:
            raise ValueError(f"schedule.milestones: {m:g} is epoch {e:g}, outside (0, {epochs}) for {epochs} epochs")


def lr_at(
    epoch: int,
    *,
    base_lr: float,  # per batch
    epochs: int,
    schedule: ScheduleConfig,
    step_in_epoch: int = 0,
    steps_per_epoch: int = 1,
) -> float:
    """The learning rate of step `step_in_epoch` of 0-indexed `epoch`.

    piecewise: base_lr * gamma ** (number of milestones <= epoch); constant within an epoch.
    cosine: base_lr * (1 + cos(pi * t)) / 2 with t = (epoch + step_in_epoch / steps_per_epoch) / epochs, so it
        starts at base_lr and reaches 0 at t = 1 (updated every step).
    halve_after: base_lr until epoch `halve_after`, then x0.5 per epoch: base_lr * 0.5 ** (epoch - halve_after).
    constant: base_lr.
    """
    if schedule.kind == "constant":
        return base_lr
    if schedule.kind == "piecewise":
        passed = sum(1 for m in milestone_epochs(schedule, epochs) if epoch >= m)
        return base_lr * schedule.gamma**passed
    if schedule.kind == "cosine":
        t = (epoch + step_in_epoch / steps_per_epoch) / epochs
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))
    if schedule.kind == "halve_after":
        return base_lr * 0.5 ** max(epoch - schedule.halve_after, 0)
    raise ValueError(f"unknown schedule.kind '{schedule.kind}'")
