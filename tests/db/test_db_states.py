"""The sweep/trial state machine (db.states) through the db functions, on SQLite and PostgreSQL: every forbidden
(from, to, actor) raises ForbiddenTransition and leaves the row exactly as it was; the allowed paths of a sweep's
life (submit, run, complete; cancel; resume; extend) go through."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, session_factory, upgrade
from db.fields import SWEEP_STATUSES, TRIAL_STATUSES
from db.models import Sweep, Trial
from db.states import (
    ACTORS,
    SWEEP_TRANSITIONS,
    TRIAL_TRANSITIONS,
    ForbiddenTransition,
    allowed_actors,
    check_transition,
    forbidden_transitions,
)
from db.sweeps import (
    add_trials,
    create_sweep,
    end_unfinished_trials,
    get_sweep,
    list_trials,
    mark_trial,
    refresh_sweep_status,
    requeue_trials,
    set_sweep_status,
)

SWEEP_FORBIDDEN = forbidden_transitions("sweep")
TRIAL_FORBIDDEN = forbidden_transitions("trial")


# ------------------------------------------------------------------------------------------------ the table itself


def test_the_table_names_only_known_statuses_and_actors() -> None:
    for table, names in ((SWEEP_TRANSITIONS, SWEEP_STATUSES), (TRIAL_TRANSITIONS, TRIAL_STATUSES)):
        for (a, b), actors in table.items():
            assert a in names and b in names and actors and set(actors) <= set(ACTORS), (a, b, actors)
    # every combination is either allowed or in the forbidden list, never both
    assert len(SWEEP_FORBIDDEN) + sum(map(len, SWEEP_TRANSITIONS.values())) == len(SWEEP_STATUSES) ** 2 * 3 == 108
    assert len(TRIAL_FORBIDDEN) + sum(map(len, TRIAL_TRANSITIONS.values())) == len(TRIAL_STATUSES) ** 2 * 3 == 108
    assert (len(SWEEP_FORBIDDEN), len(TRIAL_FORBIDDEN)) == (90, 93)


def test_the_rules_of_the_issue() -> None:
    assert allowed_actors("trial", "cancelled", "running") == frozenset()  # never runs again ...
    assert allowed_actors("trial", "cancelled", "queued") == {"api"}  # ... a resume requeues it first
    assert allowed_actors("trial", "queued", "running") == {"writer"}
    for done in ("completed", "stopped"):  # a replay never overwrites a finished trial
        assert all(not allowed_actors("trial", done, to) for to in TRIAL_STATUSES), done
    # a failed trial changes only back to queued, by the api on a resume (the wind-down's failures alone:
    # db.sweeps.requeue_trials, tests/workers/test_db_writer.py)
    assert {to: allowed_actors("trial", "failed", to) for to in TRIAL_STATUSES if allowed_actors("trial", "failed", to)} \
        == {"queued": {"api"}}
    assert allowed_actors("sweep", "queued", "running") == {"driver"}
    assert allowed_actors("sweep", "running", "cancelling") == {"api"}
    assert allowed_actors("sweep", "cancelling", "cancelled") == {"api"}
    assert all(not allowed_actors("sweep", "cancelling", to) - {"api"} for to in SWEEP_STATUSES)  # driver stays off
    assert all("writer" not in actors for actors in SWEEP_TRANSITIONS.values())  # the writer owns trial rows only


def test_check_transition_names_from_to_and_actor() -> None:
    with pytest.raises(ForbiddenTransition) as e:
        check_transition("trial", "cancelled", "running", "writer")
    assert str(e.value) == "trial status 'cancelled' -> 'running' is not allowed for the writer (allowed by nobody)"
    assert (e.value.kind, e.value.current, e.value.new, e.value.actor) == ("trial", "cancelled", "running", "writer")
    with pytest.raises(ForbiddenTransition, match=r"'running' -> 'completed' is not allowed for the api \(allowed "
                                                  r"only by driver\)"):
        check_transition("sweep", "running", "completed", "api")
    for args, word in ((("trial", "paused", "running", "writer"), "paused"), (("sweep", "queued", "done", "api"),
                       "done"), (("trial", "queued", "running", "tune"), "actor"), (("job", "a", "b", "api"), "kind")):
        with pytest.raises(ValueError, match=word):
            check_transition(*args)


# ------------------------------------------------------------------- every forbidden transition, on both backends


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sessions(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             pg_unreachable: str | None) -> Iterator[sessionmaker[Session]]:
    """One migrated database per backend for the whole module (each test makes its own sweep in it): a SQLite
    file, or a fresh PostgreSQL schema (as tests/db/conftest.py's db_url), dropped afterwards."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('states') / 'rg.db'}")
        upgrade(engine)
        yield session_factory(engine)
        engine.dispose()
        return
    if pg_unreachable:
        pytest.skip(pg_unreachable)
    pg_url = os.environ.get("ROBUSTGRID_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"rg_states_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = make_engine(make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"}))
        upgrade(engine)
        yield session_factory(engine)
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _new_sweep(sessions: sessionmaker[Session], sweep_status: str, trial_status: str = "queued") -> tuple[int, int]:
    """A sweep with one trial, put into the given statuses directly (test set-up, around the state machine)."""
    row = {"config": {"seed": 0}, "config_hash": "h0", "arch": "wrn-d1-1-1-w1-1-1", "depths": "1-1-1",
           "widths": "1-1-1", "params": 1000, "macs": 2000, "method": "sat", "lam": 1.0, "eps": 8 / 255,
           "norm": "linf", "dataset": "synthetic", "n_train": 128, "seed": 0}
    with sessions.begin() as s:
        sweep = create_sweep(s, name=f"s-{uuid.uuid4().hex[:10]}", spec={}, trials=[row], code_version="t")
        sweep_id, trial_id = sweep.id, sweep.trials[0].id
        s.execute(update(Sweep).where(Sweep.id == sweep_id).values(status=sweep_status, error="old reason"))
        s.execute(update(Trial).where(Trial.id == trial_id).values(status=trial_status, error="old error"))
    return sweep_id, trial_id


def _snapshot(sessions: sessionmaker[Session], sweep_id: int, trial_id: int) -> dict[str, Any]:
    with sessions() as s:
        sweep, trial = s.get(Sweep, sweep_id), s.get(Trial, trial_id)
        assert sweep is not None and trial is not None
        return {"sweep": (sweep.status, sweep.error, sweep.updated_at),
                "trial": (trial.status, trial.error, trial.started_at, trial.ended_at, trial.device_seconds)}


@pytest.mark.parametrize(("current", "new", "actor"), SWEEP_FORBIDDEN, ids=["-".join(c) for c in SWEEP_FORBIDDEN])
def test_every_forbidden_sweep_transition_raises_and_writes_nothing(sessions, current, new, actor) -> None:
    sweep_id, trial_id = _new_sweep(sessions, current)
    before = _snapshot(sessions, sweep_id, trial_id)
    with pytest.raises(ForbiddenTransition) as e, sessions.begin() as s:
        set_sweep_status(s, sweep_id=sweep_id, status=new, actor=actor, error="new reason")
    assert (e.value.current, e.value.new, e.value.actor) == (current, new, actor)
    assert _snapshot(sessions, sweep_id, trial_id) == before


@pytest.mark.parametrize(("current", "new", "actor"), TRIAL_FORBIDDEN, ids=["-".join(c) for c in TRIAL_FORBIDDEN])
def test_every_forbidden_trial_transition_raises_and_writes_nothing(sessions, current, new, actor) -> None:
    sweep_id, trial_id = _new_sweep(sessions, "running", current)
    before = _snapshot(sessions, sweep_id, trial_id)
    with pytest.raises(ForbiddenTransition) as e, sessions.begin() as s:
        mark_trial(s, trial_id=trial_id, status=new, actor=actor, error="new error", device_seconds=9.0)
    assert (e.value.current, e.value.new, e.value.actor) == (current, new, actor)
    assert _snapshot(sessions, sweep_id, trial_id) == before


# ------------------------------------------------------------------------ the allowed paths of a sweep's life


def _statuses(factory: sessionmaker[Session], sweep_id: int) -> tuple[str, list[str]]:
    with factory() as s:
        sweep = get_sweep(s, sweep_id=sweep_id)
        assert sweep is not None
        return sweep.status, [t.status for t in list_trials(s, sweep_id=sweep_id)]


def _run(factory: sessionmaker[Session], sweep_id: int, ends: dict[int, str]) -> str:
    """What a driver job does: the sweep `running`, the writer's trial rows (index -> end status; others stay
    untouched), then the wind-down's refresh."""
    with factory.begin() as s:
        set_sweep_status(s, sweep_id=sweep_id, status="running", actor="driver")
        trials = list_trials(s, sweep_id=sweep_id)
        for i, end in ends.items():
            mark_trial(s, trial_id=trials[i].id, status="running", actor="writer")
            if end != "running":
                mark_trial(s, trial_id=trials[i].id, status=end, actor="writer")
    with factory.begin() as s:
        return refresh_sweep_status(s, sweep_id=sweep_id, actor="driver")


def test_submit_run_complete(factory, make_sweep) -> None:
    sweep_id, _ = make_sweep("life", n=3)
    assert _statuses(factory, sweep_id) == ("queued", ["queued"] * 3)
    assert _run(factory, sweep_id, {0: "completed", 1: "stopped", 2: "failed"}) == "completed"
    assert _statuses(factory, sweep_id) == ("completed", ["completed", "stopped", "failed"])
    with pytest.raises(ForbiddenTransition), factory.begin() as s:  # a replay of trial 0 cannot touch it
        mark_trial(s, trial_id=list_trials(s, sweep_id=sweep_id)[0].id, status="running", actor="writer")


def test_failed_launch_then_resume(factory, make_sweep) -> None:
    sweep_id, _ = make_sweep("nolaunch", n=2)
    with factory.begin() as s:
        set_sweep_status(s, sweep_id=sweep_id, status="failed", actor="api", error="ConnectionError: refused")
    with factory() as s:
        assert (get_sweep(s, sweep_id=sweep_id).status, get_sweep(s, sweep_id=sweep_id).error) == (
            "failed", "ConnectionError: refused")
    with factory.begin() as s:  # resume: queued again, the old reason goes
        set_sweep_status(s, sweep_id=sweep_id, status="queued", actor="api")
    with factory() as s:
        assert (get_sweep(s, sweep_id=sweep_id).status, get_sweep(s, sweep_id=sweep_id).error) == ("queued", None)
    assert _run(factory, sweep_id, {0: "completed", 1: "completed"}) == "completed"


def test_cancel_then_resume(factory, make_sweep) -> None:
    sweep_id, ids = make_sweep("cancel", n=3)
    assert _run(factory, sweep_id, {0: "completed", 1: "running"}) == "running"
    with factory.begin() as s:  # the api: cancel requested, the job is being stopped
        set_sweep_status(s, sweep_id=sweep_id, status="cancelling", actor="api")
    with factory.begin() as s:  # the dying driver's wind-down cannot overwrite it
        end_unfinished_trials(s, sweep_id=sweep_id, status="cancelled", error="cancelled", actor="driver", max_idx=0)
        assert refresh_sweep_status(s, sweep_id=sweep_id, actor="driver") == "cancelling"
    with factory.begin() as s:  # the job has stopped: the api ends what is left
        assert end_unfinished_trials(s, sweep_id=sweep_id, status="cancelled", error="cancelled by the user",
                                     actor="api") == ids[1:]
        set_sweep_status(s, sweep_id=sweep_id, status="cancelled", actor="api")
    assert _statuses(factory, sweep_id) == ("cancelled", ["completed", "cancelled", "cancelled"])
    with pytest.raises(ForbiddenTransition, match="'cancelled' -> 'running'"), factory.begin() as s:
        mark_trial(s, trial_id=ids[1], status="running", actor="writer")  # never runs again without a requeue
    with factory.begin() as s:  # resume: the api requeues, then a new driver runs them
        assert requeue_trials(s, sweep_id=sweep_id, actor="api") == ids[1:]
        set_sweep_status(s, sweep_id=sweep_id, status="queued", actor="api")
    assert _statuses(factory, sweep_id) == ("queued", ["completed", "queued", "queued"])
    assert _run(factory, sweep_id, {1: "completed", 2: "completed"}) == "completed"


def test_killed_driver_then_resume(factory, make_sweep) -> None:
    sweep_id, ids = make_sweep("killed", n=2)
    assert _run(factory, sweep_id, {0: "running", 1: "running"}) == "running"  # then the job dies, no wind-down
    with factory.begin() as s:
        assert requeue_trials(s, sweep_id=sweep_id, actor="api") == ids
        set_sweep_status(s, sweep_id=sweep_id, status="queued", actor="api")  # running -> queued: job is gone
    assert _run(factory, sweep_id, {0: "completed", 1: "failed"}) == "completed"


def test_extend_a_completed_sweep(factory, make_sweep, trial_dict) -> None:
    sweep_id, _ = make_sweep("grow", n=1)
    assert _run(factory, sweep_id, {0: "completed"}) == "completed"
    with factory.begin() as s:
        add_trials(s, sweep_id=sweep_id, trials=[trial_dict(5)])
        set_sweep_status(s, sweep_id=sweep_id, status="queued", actor="api")
    assert _run(factory, sweep_id, {1: "completed"}) == "completed"
    assert _statuses(factory, sweep_id) == ("completed", ["completed", "completed"])


def test_a_driver_whose_trials_all_fail_fails_the_sweep(factory, make_sweep) -> None:
    sweep_id, _ = make_sweep("allfail", n=2)
    with factory.begin() as s:
        set_sweep_status(s, sweep_id=sweep_id, status="running", actor="driver")
        end_unfinished_trials(s, sweep_id=sweep_id, status="failed", error="the driver ended", actor="driver")
        assert refresh_sweep_status(s, sweep_id=sweep_id, actor="driver") == "failed"
    second_driver = pytest.raises(ForbiddenTransition, match="'failed' -> 'running' is not allowed for the driver")
    with second_driver, factory.begin() as s:  # a second driver of a failed sweep stops at once: resume queues it
        set_sweep_status(s, sweep_id=sweep_id, status="running", actor="driver")
