"""A sweep's trials one page at a time, sorted, counted and sliced by the database: the trials route's pages and the
sweep page's table (each trial with its final metrics at one checkpoint and attack). A page of a 100,000-trial
sweep reads its own rows only (the sweep page read every trial and sorted them in Python: 40 s at 6,500)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, distinct, func, select
from sqlalchemy.orm import Session

from db.models import FinalResult, Trial

MAX_TRIALS_PAGE = 10_000  # trials per page at most
MAX_OFFSET = 2**63 - 1  # what the database's OFFSET takes

TABLE_TRIAL_FIELDS = ("idx", "arch", "params", "macs", "method", "lam", "eps", "seed", "status", "device_seconds")
TABLE_FINAL_FIELDS = ("clean_acc", "robust_acc", "stability", "n_total")


@dataclass(frozen=True)
class TrialPage:
    """One page of trials and the number of trials all pages hold."""

    total: int
    limit: int
    offset: int
    rows: list[Any]  # Trial objects (list_trials_page) or dicts (trial_table_page)


def _check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_TRIALS_PAGE:
        raise ValueError(f"limit: must be in 1..{MAX_TRIALS_PAGE}, got {limit}")
    if not 0 <= offset <= MAX_OFFSET:
        raise ValueError(f"offset: must be in 0..{MAX_OFFSET}, got {offset}")


def count_trials(session: Session, *, sweep_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(Trial).where(Trial.sweep_id == sweep_id)) or 0)


def list_trials_page(session: Session, *, sweep_id: int, limit: int, offset: int = 0) -> TrialPage:
    """The sweep's trials in idx order, `limit` from `offset`, and how many it has. ValueError naming limit or
    offset when out of range."""
    _check_page(limit, offset)
    stmt = select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.idx, Trial.id).limit(limit).offset(offset)
    return TrialPage(count_trials(session, sweep_id=sweep_id), limit, offset, list(session.scalars(stmt)))


def trial_table_page(session: Session, *, sweep_id: int, checkpoint: str, attack: str, sort: str = "idx",
                     desc: bool = False, limit: int, offset: int = 0) -> TrialPage:
    """One page of the sweep's trial table: per trial its `id`, `error`, TABLE_TRIAL_FIELDS and the
    TABLE_FINAL_FIELDS of its `checkpoint` row under `attack` (None without one), sorted by `sort` (either kind of
    field; NULLs last in both directions) then idx. ValueError naming sort, limit or offset."""
    _check_page(limit, offset)
    cols = {f: getattr(Trial, f) for f in TABLE_TRIAL_FIELDS} | {f: getattr(FinalResult, f) for f in TABLE_FINAL_FIELDS}
    if sort not in cols:
        raise ValueError(f"sort: {sort!r} is not a column; one of {', '.join(cols)}")
    key = cols[sort]
    joined = and_(FinalResult.trial_id == Trial.id, FinalResult.checkpoint == checkpoint, FinalResult.attack == attack)
    stmt = (select(Trial.id, Trial.error, *[c.label(f) for f, c in cols.items()])
            .outerjoin(FinalResult, joined).where(Trial.sweep_id == sweep_id)
            .order_by(key.is_(None), key.desc() if desc else key.asc(), Trial.idx, Trial.id)
            .limit(limit).offset(offset))
    rows = [dict(r) for r in session.execute(stmt).mappings()]
    return TrialPage(count_trials(session, sweep_id=sweep_id), limit, offset, rows)


def count_depth_configs(session: Session, *, sweep_id: int) -> int:
    """Distinct depth configurations among the sweep's trials (a depth heatmap needs more than one)."""
    return int(session.scalar(select(func.count(distinct(Trial.depths))).where(Trial.sweep_id == sweep_id)) or 0)
