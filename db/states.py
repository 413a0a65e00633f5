"""The state machine of sweeps and trials: every allowed status change and who performs it.

Three actors write statuses (architecture.md, "State and settings"):

- ``api``: the service (HTTP routes and the CLI, through service.submission): a sweep is ``queued`` on submit,
  resume and extend, ``cancelling`` when a cancel is requested (its Ray job is being stopped), ``cancelled`` once
  the job is stopped, ``failed`` when its job could not be launched; trials end ``cancelled`` on a cancel and go
  back to ``queued`` (from ``running`` or ``cancelled``) before a resume.
- ``driver``: the sweep's Ray job (workers.driver): the sweep ``running`` when it starts, ``completed`` or
  ``failed`` when it winds down; its safety net ends the trials it leaves unfinished ``failed`` (or ``cancelled``
  when a cancel is under way).
- ``writer``: the Tune callback (workers.db_writer): trial rows ``running`` -> ``completed`` | ``failed`` |
  ``stopped`` (early, by the scheduler).

Rules this table fixes: a cancelled trial never becomes running again (a resume requeues it first: ``cancelled ->
queued`` by the api, then ``queued -> running`` by the writer); finished trials (``completed``, ``stopped``) and
failed ones never change again, so a replay after a driver restart cannot overwrite them; ``cancelling`` and
``cancelled`` sweeps are left alone by the driver (only the api finishes a cancel, or resumes).

Every status write in db.sweeps goes through `check_transition`. Setting a status to the one it has is a
transition too, allowed only where listed (e.g. a trial restarted by Tune: ``running -> running`` by the writer).
"""

from __future__ import annotations

from typing import Literal

from db.fields import SWEEP_STATUSES, TRIAL_STATUSES

Actor = Literal["api", "driver", "writer"]
Kind = Literal["sweep", "trial"]
ACTORS: tuple[str, ...] = ("api", "driver", "writer")


def _table(rows: dict[str, list[tuple[str, str]]]) -> dict[tuple[str, str], frozenset[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for actor, pairs in rows.items():
        for pair in pairs:
            out.setdefault(pair, set()).add(actor)
    return {pair: frozenset(actors) for pair, actors in out.items()}


# (from, to) -> the actors allowed to perform it; any pair not listed is forbidden to everyone.
SWEEP_TRANSITIONS: dict[tuple[str, str], frozenset[str]] = _table({
    "api": [
        *((s, "queued") for s in SWEEP_STATUSES),  # resume (a dead or stopped job), extend (a finished sweep)
        *((s, "cancelling") for s in SWEEP_STATUSES),  # a cancel may always be asked for (submission says 409)
        ("cancelling", "cancelled"),  # the job is stopped and the unfinished trials are cancelled
        ("queued", "failed"),  # its Ray job could not be launched
    ],
    "driver": [
        ("queued", "running"),  # the driver job starts
        ("queued", "failed"),
        ("running", "completed"),  # wind-down: every trial it ran ended
        ("running", "failed"),  # wind-down: no trial completed
    ],
})  # fmt: skip

TRIAL_TRANSITIONS: dict[tuple[str, str], frozenset[str]] = _table({
    "api": [
        ("queued", "cancelled"), ("running", "cancelled"),  # cancel
        ("running", "queued"), ("cancelled", "queued"),  # requeue before a resume
        ("failed", "queued"),  # resume: only the trials the driver's wind-down failed (db.sweeps.requeue_trials)
    ],
    "driver": [  # the wind-down safety net: no trial stays queued or running silently
        ("queued", "failed"), ("running", "failed"),
        ("queued", "cancelled"), ("running", "cancelled"),
    ],
    "writer": [
        ("queued", "running"), ("running", "running"),  # Tune starts (or restarts) the trial
        ("running", "completed"), ("running", "stopped"), ("running", "failed"),
        ("queued", "failed"),  # the trial errored before Tune reported its start
    ],
})  # fmt: skip

_TABLES = {"sweep": (SWEEP_TRANSITIONS, SWEEP_STATUSES), "trial": (TRIAL_TRANSITIONS, TRIAL_STATUSES)}


class ForbiddenTransition(Exception):
    """A status change the state machine does not allow for this actor; nothing has been written."""

    def __init__(self, kind: str, current: str, new: str, actor: str, allowed: frozenset[str]):
        who = f"only by {' or '.join(sorted(allowed))}" if allowed else "by nobody"
        super().__init__(f"{kind} status {current!r} -> {new!r} is not allowed for the {actor} "
                         f"(allowed {who})")
        self.kind, self.current, self.new, self.actor, self.allowed = kind, current, new, actor, allowed


def _check_names(kind: str, actor: str, *statuses: str) -> None:
    if kind not in _TABLES:
        raise ValueError(f"kind must be one of {sorted(_TABLES)}, got {kind!r}")
    if actor not in ACTORS:
        raise ValueError(f"actor must be one of {list(ACTORS)}, got {actor!r}")
    names = _TABLES[kind][1]
    for status in statuses:
        if status not in names:
            raise ValueError(f"{kind} status must be one of {list(names)}, got {status!r}")


def allowed_actors(kind: str, current: str, new: str) -> frozenset[str]:
    """Who may change a `kind` (sweep, trial) from `current` to `new` (empty: nobody)."""
    _check_names(kind, "api", current, new)
    return _TABLES[kind][0].get((current, new), frozenset())


def check_transition(kind: str, current: str, new: str, actor: str) -> None:
    """Raise `ForbiddenTransition` unless `actor` may change a `kind` from `current` to `new`; ValueError (naming
    the field) for an unknown kind, actor or status."""
    _check_names(kind, actor, current, new)
    allowed = _TABLES[kind][0].get((current, new), frozenset())
    if actor not in allowed:
        raise ForbiddenTransition(kind, current, new, actor, allowed)


def forbidden_transitions(kind: str) -> list[tuple[str, str, str]]:
    """Every (from, to, actor) the table forbids for `kind`: what the tests walk through."""
    table, names = _TABLES[kind]
    return [(a, b, actor) for a in names for b in names for actor in ACTORS
            if actor not in table.get((a, b), frozenset())]
