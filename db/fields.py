"""Status names of sweeps and trials (their transitions: db.states) and the range of the database's integers. The
result vocabulary is db.contract."""

from __future__ import annotations

SWEEP_STATUSES: tuple[str, ...] = ("queued", "running", "completed", "failed", "cancelling", "cancelled")
TRIAL_STATUSES: tuple[str, ...] = ("queued", "running", "completed", "failed", "cancelled", "stopped")
TERMINAL_TRIAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "stopped"})

# Every integer column (ids, params, seeds, counts) is a 64-bit integer; a larger Python int cannot even be bound
# (SQLite's driver raises OverflowError, PostgreSQL's NumericValueOutOfRange): check before a query.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def fits_int64(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX


def id_in_text(text: str) -> int | None:
    """The id a reference names when it is written as ASCII digits that fit a database integer (`"12"` -> 12),
    else None: a name. (`str.isdigit` is true for `"³"`, which `int` refuses, and for ids no column holds.)"""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text) if len(text) <= 20 else INT64_MAX + 1
    return value if fits_int64(value) else None
