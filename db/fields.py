"""Status names of sweeps and trials (their transitions: db.states). The result vocabulary is db.contract."""

from __future__ import annotations

SWEEP_STATUSES: tuple[str, ...] = ("queued", "running", "completed", "failed", "cancelling", "cancelled")
TRIAL_STATUSES: tuple[str, ...] = ("queued", "running", "completed", "failed", "cancelled", "stopped")
TERMINAL_TRIAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "stopped"})
