"""Sweeps and trials: keyword-only data access taking a `Session`.

Transactions belong to the caller (`with session.begin(): create_sweep(...)`), so a sweep and all its trials are
written all or nothing; these functions only flush.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from db.fields import SWEEP_STATUSES, TERMINAL_TRIAL_STATUSES, TRIAL_STATUSES, id_in_text
from db.models import Sweep, Trial, utcnow
from db.states import Actor, ForbiddenTransition, check_transition

__all__ = ["ForbiddenTransition"]  # raised by every status write below (db.states says who may do what)

# Trial columns a caller may set in `create_sweep` (id, sweep_id and the run-time columns are ours).
TRIAL_INPUT_KEYS: frozenset[str] = frozenset(
    {"idx", "config", "config_hash", "arch", "depths", "widths", "params", "macs", "method", "lam", "eps", "norm",
     "dataset", "n_train", "seed", "status", "code_version"}
)  # fmt: skip


class SweepExists(ValueError):
    """A sweep with this name already exists."""


def name_taken(name: str) -> SweepExists:
    """The one answer to a taken name, whoever's sweep holds it: names are unique across owners (the CLI addresses
    sweeps by name), and the answer names no sweep, id or owner."""
    return SweepExists(f"sweep name {name!r} is taken; choose another")


class NotFound(LookupError):
    """No sweep or trial with this id."""


def _check(status: str, allowed: tuple[str, ...], what: str) -> None:
    if status not in allowed:
        raise ValueError(f"{what} status must be one of {list(allowed)}, got {status!r}")


def create_sweep(
    session: Session, *, name: str, spec: dict[str, Any], trials: list[dict[str, Any]], code_version: str,
    owner: str | None = None
) -> Sweep:
    """Insert a sweep (status `queued`) and its trials; flushes, so ids are set. A trial dict holds the trial
    columns (`idx` defaults to its position, `status` to `queued`, `code_version` to the sweep's). Raises
    `SweepExists` for a taken name, ValueError for an unknown trial key, IntegrityError for a bad trial row (the
    caller's transaction then rolls back everything, the sweep row included)."""
    for i, t in enumerate(trials):
        unknown = sorted(set(t) - TRIAL_INPUT_KEYS)
        if unknown:
            raise ValueError(f"trial {i}: unknown trial field(s) {unknown}")
        _check(t.get("status", "queued"), TRIAL_STATUSES, f"trial {i}")
    if session.scalar(select(Sweep.id).where(Sweep.name == name)) is not None:
        raise name_taken(name)
    sweep = Sweep(name=name, spec=spec, status="queued", code_version=code_version, n_trials=len(trials),
                  owner=owner)
    session.add(sweep)
    try:
        session.flush()  # no savepoint (pysqlite's legacy transactions make SAVEPOINTs unreliable)
    except IntegrityError as e:  # a concurrent insert of the same name won the race
        raise name_taken(name) from e
    set_committed_value(sweep, "trials", [])  # a new sweep has no trials: no lazy load, usable after the session
    sweep.trials.extend(
        Trial(**{"idx": i, "status": "queued", "code_version": code_version, **t}) for i, t in enumerate(trials)
    )
    session.flush()
    return sweep


def get_sweep(session: Session, *, sweep_id: int) -> Sweep | None:
    return session.get(Sweep, sweep_id)


def get_sweep_by_name_or_id(session: Session, *, ref: str) -> Sweep | None:
    """`ref` is a sweep name or a numeric id (an id wins when both could match)."""
    ref = str(ref).strip()
    if (sweep_id := id_in_text(ref)) is not None:
        sweep = session.get(Sweep, sweep_id)
        if sweep is not None:
            return sweep
    return session.scalar(select(Sweep).where(Sweep.name == ref))


def list_sweeps(session: Session, *, visible_to: str | None = None) -> list[Sweep]:
    """Every sweep, or with `visible_to` an owner's sweeps and the imported reference sweeps."""
    query = select(Sweep).order_by(Sweep.id)
    if visible_to is not None:
        query = query.where(or_(Sweep.owner == visible_to, Sweep.imported.is_(True)))
    return list(session.scalars(query))


def list_trials(session: Session, *, sweep_id: int) -> list[Trial]:
    return list(session.scalars(select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.idx)))


def get_trial(session: Session, *, trial_id: int) -> Trial | None:
    return session.get(Trial, trial_id)


def trial_status_counts(session: Session, *, sweep_id: int) -> dict[str, int]:
    """Number of trials per status; every trial status is a key (0 when absent)."""
    counts = dict.fromkeys(TRIAL_STATUSES, 0)
    rows = session.execute(
        select(Trial.status, func.count()).where(Trial.sweep_id == sweep_id).group_by(Trial.status)
    )
    for status, n in rows:
        counts[status] = int(n)
    return counts


def _sweep(session: Session, sweep_id: int) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFound(f"no sweep with id {sweep_id}")
    return sweep


def set_sweep_status(session: Session, *, sweep_id: int, status: str, actor: Actor, error: str | None = None) -> Sweep:
    """Move the sweep to `status` as `actor` (db.states; ForbiddenTransition, nothing written, when not allowed).
    `error` says why a sweep failed; a sweep leaving `failed` loses its old error."""
    _check(status, SWEEP_STATUSES, "sweep")
    sweep = _sweep(session, sweep_id)
    check_transition("sweep", sweep.status, status, actor)
    sweep.status = status
    if error is not None or status != "failed":
        sweep.error = error
    session.flush()
    return sweep


def set_sweep_job(session: Session, *, sweep_id: int, ray_job_id: str | None, dashboard_url: str | None) -> Sweep:
    sweep = _sweep(session, sweep_id)
    sweep.ray_job_id = ray_job_id
    sweep.dashboard_url = dashboard_url
    session.flush()
    return sweep


def mark_trial(
    session: Session, *, trial_id: int, status: str, actor: Actor, error: str | None = None,
    device_seconds: float | None = None,
) -> Trial:
    """Set a trial's status as `actor` (db.states; ForbiddenTransition, nothing written, when not allowed: a
    finished trial is never overwritten, a cancelled one never runs again). `running` sets started_at (first
    start only; a resumed trial keeps it) and clears ended_at and error; `queued` (a requeue) clears ended_at and
    error; a terminal status (completed, failed, cancelled, stopped) sets ended_at. `error` and `device_seconds`
    (the whole trial) are written when given; where the trial runs (device, node) is db.attempts.record_attempt."""
    _check(status, TRIAL_STATUSES, "trial")
    trial = session.get(Trial, trial_id)
    if trial is None:
        raise NotFound(f"no trial with id {trial_id}")
    check_transition("trial", trial.status, status, actor)
    now = utcnow()
    trial.status = status
    if status == "running":
        trial.started_at = trial.started_at or now
        trial.ended_at = None
        trial.error = None
    elif status == "queued":  # requeued before a resume: it keeps its first start
        trial.ended_at = None
        trial.error = None
    elif status in TERMINAL_TRIAL_STATUSES:
        trial.ended_at = now
    if error is not None:
        trial.error = error
    if device_seconds is not None:
        trial.device_seconds = float(device_seconds)
    session.flush()
    return trial


def derive_sweep_status(current: str, counts: dict[str, int]) -> str:
    """The sweep status implied by its trials' status counts (pure; see `refresh_sweep_status`)."""
    if current in ("cancelling", "cancelled"):
        return current  # sticky: only the api finishes a cancel (or resumes)
    total = sum(counts.values())
    pending = counts.get("queued", 0) + counts.get("running", 0)
    if total == 0:
        return current
    if pending:
        if current == "failed":
            return "failed"  # the job died with trials unfinished; a resume sets `running` explicitly
        return "queued" if counts.get("queued", 0) == total else "running"
    if counts.get("completed", 0) + counts.get("stopped", 0) == 0:
        return "failed"  # every trial failed or was cancelled (without a cancel of the sweep: its job ended)
    return "completed"


def refresh_sweep_status(session: Session, *, sweep_id: int, actor: Actor) -> str:
    """Derive the sweep's status from its trials and store it as `actor` (ForbiddenTransition when the change is
    not `actor`'s to make; no change, no check):
    - `cancelling` and `cancelled` are sticky; a sweep without trials keeps its status;
    - some trial queued or running: `queued` if no trial has started yet, else `running` (but a sweep marked
      `failed`, i.e. its job died, stays `failed`);
    - all trials terminal: `failed` if none completed or stopped, otherwise `completed` (failed or early-stopped
      trials do not fail the sweep)."""
    sweep = _sweep(session, sweep_id)
    status = derive_sweep_status(sweep.status, trial_status_counts(session, sweep_id=sweep_id))
    if status != sweep.status:
        set_sweep_status(session, sweep_id=sweep_id, status=status, actor=actor)
    return status


# ------------------------------------------------------------------------------------- lifecycle: grow, end, requeue

UNFINISHED_TRIAL_STATUSES: tuple[str, ...] = ("queued", "running")


def add_trials(session: Session, *, sweep_id: int, trials: list[dict[str, Any]]) -> list[Trial]:
    """Append trials to an existing sweep (extend, or a search sampling a configuration). `idx` continues after the
    sweep's last trial, status is `queued`, code_version the sweep's unless given. A trial whose config_hash the
    sweep already holds is skipped, so the returned list holds only the new rows. Updates n_trials; flushes."""
    sweep = _sweep(session, sweep_id)
    for i, t in enumerate(trials):
        unknown = sorted(set(t) - TRIAL_INPUT_KEYS - {"idx"})
        if unknown or "idx" in t:
            raise ValueError(f"trial {i}: unknown or reserved trial field(s) {unknown or ['idx']}")
        _check(t.get("status", "queued"), TRIAL_STATUSES, f"trial {i}")
    taken = trial_hashes(session, sweep_id=sweep_id)
    last = session.scalar(select(func.max(Trial.idx)).where(Trial.sweep_id == sweep_id))
    next_idx = -1 if last is None else int(last)
    added = []
    for t in trials:
        if t["config_hash"] in taken:
            continue
        taken.add(t["config_hash"])
        next_idx += 1
        row = Trial(**{"status": "queued", "code_version": sweep.code_version, **t}, idx=next_idx, sweep_id=sweep_id)
        session.add(row)
        added.append(row)
    session.flush()
    sweep.n_trials = int(session.scalar(select(func.count()).where(Trial.sweep_id == sweep_id)) or 0)
    session.flush()
    return added


def get_trial_by_hash(session: Session, *, sweep_id: int, config_hash: str) -> Trial | None:
    return session.scalar(select(Trial).where(Trial.sweep_id == sweep_id, Trial.config_hash == config_hash))


def trial_hashes(session: Session, *, sweep_id: int) -> set[str]:
    """The config hashes the sweep already holds (what `extend` and a search must not add again)."""
    return set(session.scalars(select(Trial.config_hash).where(Trial.sweep_id == sweep_id)))


def max_trial_idx(session: Session, *, sweep_id: int) -> int | None:
    """The largest trial idx of the sweep (None when it has no trials)."""
    return session.scalar(select(func.max(Trial.idx)).where(Trial.sweep_id == sweep_id))


def end_unfinished_trials(session: Session, *, sweep_id: int, status: str, error: str, actor: Actor,
                          max_idx: int | None = None) -> list[int]:
    """Give every queued or running trial of the sweep (with idx <= `max_idx` when given) the terminal `status`
    (cancelled, failed) with `error`, as `actor`; finished trials keep theirs. Returns the ids changed."""
    if status not in TERMINAL_TRIAL_STATUSES:
        raise ValueError(f"status must be terminal ({sorted(TERMINAL_TRIAL_STATUSES)}), got {status!r}")
    for unfinished in UNFINISHED_TRIAL_STATUSES:  # the actor's right, whether or not a trial is unfinished now
        check_transition("trial", unfinished, status, actor)
    query = select(Trial).where(Trial.sweep_id == sweep_id, Trial.status.in_(UNFINISHED_TRIAL_STATUSES))
    if max_idx is not None:
        query = query.where(Trial.idx <= max_idx)
    rows = session.scalars(query.order_by(Trial.idx))
    ids = []
    for t in rows:
        mark_trial(session, trial_id=t.id, status=status, error=error, actor=actor)
        ids.append(t.id)
    return ids


DRIVER_ENDED = "the driver ended without finishing this trial"  # the wind-down's error: such a trial may resume


def requeue_trials(session: Session, *, sweep_id: int, actor: Actor,
                   statuses: tuple[str, ...] = ("running", "cancelled"), driver_ended: bool = False) -> list[int]:
    """Set trials in `statuses` back to `queued` (error and ended_at cleared, started_at kept) before a resume, as
    `actor` (ForbiddenTransition, nothing written, for a status that may not be requeued). With `driver_ended`,
    also the failed trials the driver's wind-down ended (error DRIVER_ENDED): Tune restarts them from their last
    checkpoint; a trial that failed on its own (an exception, a non-finite loss) stays failed. Returns the ids."""
    for s in (*statuses, *(("failed",) if driver_ended else ())):
        _check(s, TRIAL_STATUSES, "trial")
        check_transition("trial", s, "queued", actor)
    which = Trial.status.in_(statuses)
    if driver_ended:
        which = or_(which, (Trial.status == "failed") & (Trial.error == DRIVER_ENDED))
    rows = session.scalars(select(Trial).where(Trial.sweep_id == sweep_id, which).order_by(Trial.idx))
    return [mark_trial(session, trial_id=t.id, status="queued", actor=actor).id for t in list(rows)]


def set_sweep_spec(session: Session, *, sweep_id: int, spec: dict[str, Any]) -> Sweep:
    """Replace the stored spec (an extended sweep stores the spec it now covers)."""
    sweep = _sweep(session, sweep_id)
    sweep.spec = spec
    session.flush()
    return sweep


# -------------------------------------------------------------------------- launch claims: one launch at a time


def claim_launch(session: Session, *, sweep_id: int, claim: str, lease_s: float, relaunch: bool = False,
                 dead_claim: str | None = None) -> bool:
    """Take the right to launch the sweep's Ray job for `lease_s` seconds, atomically (one conditional UPDATE: of
    concurrent callers exactly one gets True). Only a `queued` sweep whose claim is free, lapsed or `dead_claim`
    (one whose process is known to have died), and without a job unless `relaunch` (resume, extend: the sweep keeps
    its old job's id until the new one is submitted)."""
    now = utcnow()
    free = [Sweep.launch_lease_until.is_(None), Sweep.launch_lease_until < now]
    if dead_claim is not None:
        free.append(Sweep.launch_claim == dead_claim)
    where = [Sweep.id == sweep_id, Sweep.status == "queued", or_(*free)]
    if not relaunch:
        where.append(Sweep.ray_job_id.is_(None))
    result = session.execute(update(Sweep).where(*where)
                             .values(launch_claim=claim, launch_lease_until=now + timedelta(seconds=lease_s))
                             .execution_options(synchronize_session=False))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def renew_launch_claim(session: Session, *, sweep_id: int, claim: str, lease_s: float) -> bool:
    """Extend our claim by `lease_s` from now (False: it is no longer ours)."""
    result = session.execute(update(Sweep).where(Sweep.id == sweep_id, Sweep.launch_claim == claim)
                             .values(launch_lease_until=utcnow() + timedelta(seconds=lease_s))
                             .execution_options(synchronize_session=False))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def release_launch_claim(session: Session, *, sweep_id: int, claim: str) -> None:
    session.execute(update(Sweep).where(Sweep.id == sweep_id, Sweep.launch_claim == claim)
                    .values(launch_claim=None, launch_lease_until=None).execution_options(synchronize_session=False))


def launch_in_progress(session: Session, *, sweep_id: int) -> str | None:
    """The claim of the request launching the queued sweep now (a live lease), else None."""
    return session.scalar(select(Sweep.launch_claim).where(
        Sweep.id == sweep_id, Sweep.status == "queued", Sweep.launch_lease_until >= utcnow()))
