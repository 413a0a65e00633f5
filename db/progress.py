"""How far a sweep has got: per trial its status and epochs done of epochs planned (what `submit --wait` and the
demo draw as progress bars)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import EpochMetric, Trial


@dataclass(frozen=True)
class TrialProgress:
    id: int
    idx: int
    arch: str
    status: str
    epochs_done: int  # epoch rows stored (a resumed trial continues from its checkpoint, never twice)
    epochs_total: int  # the trial config's epochs (0 when the config does not say)


def trial_progress(session: Session, *, sweep_id: int) -> list[TrialProgress]:
    """Every trial of the sweep in idx order with its epochs done and planned; one query."""
    done = (select(EpochMetric.trial_id, func.count().label("n")).group_by(EpochMetric.trial_id)
            .subquery())
    rows = session.execute(
        select(Trial.id, Trial.idx, Trial.arch, Trial.status, Trial.config, func.coalesce(done.c.n, 0))
        .outerjoin(done, done.c.trial_id == Trial.id)
        .where(Trial.sweep_id == sweep_id)
        .order_by(Trial.idx)
    ).all()
    return [TrialProgress(id=r[0], idx=r[1], arch=r[2], status=r[3], epochs_done=int(r[5]),
                          epochs_total=int((r[4] or {}).get("epochs") or 0)) for r in rows]
