"""A trial's attempts: how often Tune restarted it after a failure, and the batch size, device and node it runs with.

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


def record_attempt(session: Session, *, trial_id: int, batch_size: int | None = None, device: str | None = None,
                   node: str | None = None) -> None:
    """Record where and how the trial runs now, from its latest report: the training batch size (its config's, or a
    halved one after an out-of-memory error), the device and the node (host and IP; a trial moved to another node
    after a failure shows its new one). None leaves a field as it is. Raises ValueError for a batch size below 1,
    NotFound for an unknown trial."""
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    trial = session.get(Trial, int(trial_id))
    if trial is None:
        raise NotFound(f"no trial with id {trial_id}")
    if batch_size is not None:
        trial.batch_size_used = int(batch_size)
    if device is not None:
        trial.device = device
    if node is not None:
        trial.node = node
    session.flush()
