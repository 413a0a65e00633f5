"""A trial's attempts: how often Tune restarted it after a failure, and the batch size it trained with.

Both are written by the Tune callback (workers.db_writer), the single writer of trial rows. `add_retry` is one
UPDATE (`retries = retries + 1`), so two writers never lose an increment.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from db.models import Trial
from db.sweeps import NotFound


def add_retry(session: Session, *, trial_id: int) -> int:
    """Count one restart of the trial (Tune's FailureConfig retry from its last checkpoint); returns the new count.
    Raises NotFound for an unknown trial."""
    n = session.execute(update(Trial).where(Trial.id == int(trial_id)).values(retries=Trial.retries + 1)
                        .returning(Trial.retries)).scalar_one_or_none()
    if n is None:
        raise NotFound(f"no trial with id {trial_id}")
    return int(n)


def set_batch_size_used(session: Session, *, trial_id: int, batch_size: int) -> None:
    """Record the training batch size the trial ran with (its config's, or a halved one after an out-of-memory
    error). Raises ValueError for a batch size below 1, NotFound for an unknown trial."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    trial = session.get(Trial, int(trial_id))
    if trial is None:
        raise NotFound(f"no trial with id {trial_id}")
    trial.batch_size_used = int(batch_size)
    session.flush()
