"""Faults injected into a trial on purpose, for the fault-tolerance tests (tests/faults/).

A trial's param space may carry `inject` (never set by the driver; tests build it): a dict with any of
- `oom_at_batch`: int, with `oom_above_batch_size`: int (default 0): raise torch.OutOfMemoryError at that batch
  index of every epoch while the training batch size is above the bound (so halving the batch size cures it);
- `nan_at_epoch`: int (1-based): set the model's first parameter to NaN before that epoch's first batch, so the
  training loss turns non-finite the way a diverging run's does.
`batch_hook(inject)` turns it into the trainer's per-batch hook (`Trainer.batch_hook(trainer, epoch, batch)`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

KEYS = ("oom_at_batch", "oom_above_batch_size", "nan_at_epoch")
BatchHook = Callable[[Any, int, int], None]


def batch_hook(inject: dict[str, Any] | None) -> BatchHook | None:
    """The per-batch hook injecting `inject`'s faults; None when there is nothing to inject. Raises ValueError
    naming an unknown key or a value that is not a non-negative integer."""
    if not inject:
        return None
    for k, v in inject.items():
        if k not in KEYS:
            raise ValueError(f"inject.{k}: unknown fault (known: {', '.join(KEYS)})")
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"inject.{k}: must be a non-negative integer, got {v!r}")
    oom_at, oom_above, nan_at = inject.get("oom_at_batch"), inject.get("oom_above_batch_size", 0), inject.get(
        "nan_at_epoch")

    def hook(trainer: Any, epoch: int, batch: int) -> None:  # epoch 0-based, as the trainer counts
        if oom_at is not None and batch == oom_at and trainer.cfg.batch_size > oom_above:
            raise torch.OutOfMemoryError(f"injected: out of memory at batch {batch}, batch size "
                                         f"{trainer.cfg.batch_size}")
        if nan_at is not None and epoch + 1 == nan_at and batch == 0:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    return hook
