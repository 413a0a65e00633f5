"""The Tune callback that is the single writer of results into the database.

Per-epoch rows are upserted by (trial, epoch) and final rows by (trial, checkpoint, attack), so replaying a
trial after a crash (Tuner.restore) never duplicates or loses a row. Trial status transitions:
queued -> running -> completed | failed (with the error text) | stopped (early, by the scheduler: the reason, e.g.
the ASHA rung and cutoff, goes into `error`). A trial the database already holds as completed or stopped (a replay
after a driver restart, reported as `kind = "skipped"` by the trainable) is left exactly as it is. Each restart of a
trial by Tune's FailureConfig (from its last checkpoint) adds one to `trials.retries`; the training batch size a
report names (`batch_size_used`: the config's, or a halved one after an out-of-memory error) is recorded, and so are
its device and node from the first epoch on (a trial restarted on another node shows the new one).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ray import cloudpickle
from ray.tune import Callback
from sqlalchemy.orm import Session, sessionmaker

from db.attempts import add_retry, record_attempt
from db.contract import EpochReport, FinalRow
from db.engine import make_engine, session_factory
from db.results import upsert_epoch, upsert_final
from db.states import ForbiddenTransition
from db.sweeps import get_trial, mark_trial

log = logging.getLogger(__name__)

def _trial_id(trial: Any) -> int:
    return int(trial.config["trial"]["trial_id"])


def error_text(trial: Any) -> str:
    """`ExceptionType: message` of the trial's original exception. Tune has just written it to the driver's
    staging copy of the trial directory (`pickled_error_file`, `error_file`); storage is synced later."""
    cause = None
    path = trial.pickled_error_file
    if path and os.path.exists(path):
        try:
            with open(path, "rb") as f:
                err = cloudpickle.load(f)
            cause = getattr(err, "cause", None) or err
        except Exception:  # noqa: BLE001 - an unreadable error file must not hide the failure itself
            cause = None
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"[:4000]
    path = trial.error_file
    if path and os.path.exists(path):
        with open(path) as f:
            return f.read()[-4000:]
    return "unknown error (no error file)"


FINISHED = ("completed", "stopped")  # trial statuses a replay must never overwrite


class DBWriter(Callback):
    """Writes what trials report into the database at `database_url`. Tune pickles its callbacks with the
    experiment (for Tuner.restore), so the engine is created lazily and never pickled. `scheduler`, when given,
    explains early stops (`stop_reason(tune_trial_id)`); it is pickled with this callback in the same tuner state,
    so the reference survives a restore."""

    def __init__(self, database_url: str, sweep_id: int, scheduler: Any = None):
        self.database_url, self.sweep_id = database_url, sweep_id
        self.scheduler = scheduler
        self.failed: set[int] = set()
        self.stopped: set[int] = set()
        self._sessions: sessionmaker[Session] | None = None

    @property
    def make_session(self) -> sessionmaker[Session]:
        if self._sessions is None:
            self._sessions = session_factory(make_engine(self.database_url))
        return self._sessions

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sessions": None}

    @staticmethod
    def _set(s: Session, tid: int, status: str, **kw: Any) -> None:
        """The writer's status change, unless the trial is no longer the writer's to change (the api cancelled it
        while the job was dying, or a replay reports a finished trial): that is logged, not raised, so one trial's
        row never takes the Tune loop (and the sweep) down. The trial's result rows are written either way."""
        try:
            mark_trial(s, trial_id=tid, status=status, actor="writer", **kw)
        except ForbiddenTransition as e:
            log.warning("trial %s: not marked %s: %s", tid, status, e)

    def _mark(self, trial: Any, status: str, **kw: Any) -> None:
        with self.make_session.begin() as s:
            self._set(s, _trial_id(trial), status, **kw)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        with self.make_session.begin() as s:
            row = get_trial(s, trial_id=_trial_id(trial))
            if row is not None and row.status in FINISHED:
                return  # finished before a driver restart: the trainable skips it
            self._set(s, _trial_id(trial), "running")

    def _stop_reason(self, trial: Any, result: dict[str, Any]) -> str:
        reason = self.scheduler.stop_reason(trial.trial_id) if self.scheduler is not None else None
        return reason or f"stopped early by the scheduler at epoch {result.get('epoch')}"

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
        tid, kind = _trial_id(trial), result.get("kind")
        with self.make_session.begin() as s:
            if kind in ("epoch", "final", "failed"):  # where and how it runs now (a retry may move it)
                record_attempt(s, trial_id=tid, batch_size=result.get("batch_size_used"), device=result.get("device"),
                               node=result.get("node"))
            if kind == "epoch":
                report = EpochReport.model_validate({k: result[k] for k in EpochReport.model_fields if k in result})
                upsert_epoch(s, trial_id=tid, report=report)
                if result.get("done"):  # the scheduler stopped the trial at this epoch (Tune sets done first)
                    self.stopped.add(tid)
                    self._set(s, tid, "stopped", error=self._stop_reason(trial, result),
                              device_seconds=result.get("trial_device_seconds"))
            elif kind == "final":
                for row in result["final_rows"]:
                    upsert_final(s, trial_id=tid, row=FinalRow.model_validate(row))
                self._set(s, tid, "completed", device_seconds=result["trial_device_seconds"])
            elif kind == "failed":
                self.failed.add(tid)
                self._set(s, tid, "failed", error=str(result["error"]))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        # completion rows were written with the final result; a trial that ended without one failed silently
        tid = _trial_id(trial)
        if tid in self.failed or tid in self.stopped or trial.last_result.get("kind") in ("final", "skipped"):
            return
        self._mark(trial, "failed", error="trial ended without a final evaluation")

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        # the trial errored (its worker died, its node was lost) and Tune restarts it from its last checkpoint
        tid = _trial_id(trial)
        with self.make_session.begin() as s:
            n = add_retry(s, trial_id=tid)
        log.warning("trial %s restarted from its last checkpoint (retry %d): %s", tid, n,
                    (error_text(trial).splitlines() or [""])[0])

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        text = error_text(trial)
        log.warning("trial %s failed: %s", _trial_id(trial), text.splitlines()[0] if text else "")
        self._mark(trial, "failed", error=text)
