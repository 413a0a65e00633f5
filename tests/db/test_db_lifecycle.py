"""Lifecycle data access (extend, search sampling, cancel, resume) on every backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from db.sweeps import (
    ForbiddenTransition,
    add_trials,
    end_unfinished_trials,
    get_sweep,
    get_trial_by_hash,
    list_trials,
    mark_trial,
    max_trial_idx,
    requeue_trials,
    set_sweep_spec,
    trial_hashes,
)


def test_add_trials_appends_after_the_last_idx_and_skips_known_hashes(factory, make_sweep, trial_dict) -> None:
    sweep_id, ids = make_sweep("grow", n=3)
    with factory.begin() as s:
        added = add_trials(s, sweep_id=sweep_id, trials=[trial_dict(1), trial_dict(7), trial_dict(8), trial_dict(7)])
        assert [(t.idx, t.config_hash) for t in added] == [(3, "hash-0007"), (4, "hash-0008")]
    with factory() as s:
        rows = list_trials(s, sweep_id=sweep_id)
        assert [t.idx for t in rows] == [0, 1, 2, 3, 4]
        assert [t.id for t in rows[:3]] == ids  # the existing rows are untouched
        assert {t.status for t in rows[3:]} == {"queued"} and {t.code_version for t in rows[3:]} == {"abc123"}
        assert get_sweep(s, sweep_id=sweep_id).n_trials == 5
        assert trial_hashes(s, sweep_id=sweep_id) == {f"hash-{i:04d}" for i in (0, 1, 2, 7, 8)}
        assert get_trial_by_hash(s, sweep_id=sweep_id, config_hash="hash-0008").idx == 4
        assert get_trial_by_hash(s, sweep_id=sweep_id, config_hash="hash-9999") is None


def test_add_trials_to_an_empty_search_sweep_starts_at_zero(factory, make_sweep, trial_dict) -> None:
    sweep_id, _ = make_sweep("search", n=0)
    with factory.begin() as s:
        assert [t.idx for t in add_trials(s, sweep_id=sweep_id, trials=[trial_dict(5)])] == [0]
        assert add_trials(s, sweep_id=sweep_id, trials=[trial_dict(5)]) == []  # a second sampling of it: no row


def test_add_trials_rejects_bad_rows_and_writes_nothing(factory, make_sweep, trial_dict) -> None:
    sweep_id, _ = make_sweep("bad", n=1)
    for bad, word in ((trial_dict(3) | {"idx": 9}, "idx"), (trial_dict(3) | {"colour": 1}, "colour"),
                      (trial_dict(3) | {"status": "paused"}, "paused")):
        with pytest.raises(ValueError, match=word), factory.begin() as s:
            add_trials(s, sweep_id=sweep_id, trials=[bad])
    with pytest.raises(IntegrityError), factory.begin() as s:  # a NOT NULL column missing: all rolled back
        add_trials(s, sweep_id=sweep_id, trials=[trial_dict(4), {**trial_dict(5), "arch": None}])
    with factory() as s:
        assert len(list_trials(s, sweep_id=sweep_id)) == 1 and get_sweep(s, sweep_id=sweep_id).n_trials == 1


def test_end_unfinished_trials_keeps_finished_ones(factory, make_sweep) -> None:
    sweep_id, ids = make_sweep("cancel", n=4)
    with factory.begin() as s:
        for i in range(3):
            mark_trial(s, trial_id=ids[i], status="running", actor="writer")
        mark_trial(s, trial_id=ids[0], status="completed", device_seconds=3.0, actor="writer")
        mark_trial(s, trial_id=ids[2], status="stopped", error="asha: stopped at epoch 1", actor="writer")
    with factory.begin() as s:
        assert end_unfinished_trials(s, sweep_id=sweep_id, status="cancelled", error="cancelled by the user",
                                     actor="api") == [ids[1], ids[3]]
    with factory() as s:
        rows = list_trials(s, sweep_id=sweep_id)
        assert [t.status for t in rows] == ["completed", "cancelled", "stopped", "cancelled"]
        assert rows[0].device_seconds == 3.0 and rows[2].error == "asha: stopped at epoch 1"
        assert rows[1].error == rows[3].error == "cancelled by the user"
        assert rows[1].ended_at is not None and rows[3].ended_at is not None
    with pytest.raises(ValueError, match="terminal"), factory.begin() as s:
        end_unfinished_trials(s, sweep_id=sweep_id, status="queued", error="x", actor="api")
    with pytest.raises(ForbiddenTransition), factory.begin() as s:  # the writer ends trials one by one
        end_unfinished_trials(s, sweep_id=sweep_id, status="cancelled", error="x", actor="writer")


def test_end_unfinished_trials_up_to_an_idx(factory, make_sweep, trial_dict) -> None:
    """A driver winding down ends only its own trials (idx <= max_idx): rows an extension added stay queued."""
    sweep_id, ids = make_sweep("bounded", n=2)
    with factory.begin() as s:
        assert max_trial_idx(s, sweep_id=sweep_id) == 1
        mark_trial(s, trial_id=ids[0], status="running", actor="writer")
        mark_trial(s, trial_id=ids[0], status="completed", actor="writer")
        new = [t.id for t in add_trials(s, sweep_id=sweep_id, trials=[trial_dict(5)])]
    with factory.begin() as s:
        assert end_unfinished_trials(s, sweep_id=sweep_id, status="failed", error="x", max_idx=1,
                                     actor="driver") == [ids[1]]
    with factory() as s:
        assert [(t.id, t.status) for t in list_trials(s, sweep_id=sweep_id)] == [
            (ids[0], "completed"), (ids[1], "failed"), (new[0], "queued")]
        assert max_trial_idx(s, sweep_id=sweep_id) == 2
        assert max_trial_idx(s, sweep_id=make_sweep("empty", n=0)[0]) is None


def test_requeue_trials_before_a_resume(factory, make_sweep) -> None:
    sweep_id, ids = make_sweep("resume", n=4)
    with factory.begin() as s:
        for i in range(3):
            mark_trial(s, trial_id=ids[i], status="running", actor="writer")
        mark_trial(s, trial_id=ids[0], status="completed", actor="writer")
        mark_trial(s, trial_id=ids[2], status="cancelled", error="cancelled by the user", actor="api")
        mark_trial(s, trial_id=ids[3], status="failed", error="boom", actor="writer")
    with factory() as s:
        started = list_trials(s, sweep_id=sweep_id)[1].started_at
    with factory.begin() as s:
        assert requeue_trials(s, sweep_id=sweep_id, actor="api") == [ids[1], ids[2]]
    with factory() as s:
        rows = list_trials(s, sweep_id=sweep_id)
        assert [t.status for t in rows] == ["completed", "queued", "queued", "failed"]
        assert rows[2].error is None and rows[2].ended_at is None and rows[3].error == "boom"
        assert rows[1].started_at == started  # a resumed trial keeps its first start
    with pytest.raises(ValueError, match="paused"), factory.begin() as s:
        requeue_trials(s, sweep_id=sweep_id, statuses=("paused",), actor="api")
    with pytest.raises(ForbiddenTransition, match="'failed' -> 'queued'"), factory.begin() as s:
        requeue_trials(s, sweep_id=sweep_id, statuses=("failed",), actor="writer")
    with factory.begin() as s:  # a trial that errored on its own stays failed on a resume
        assert requeue_trials(s, sweep_id=sweep_id, actor="api", driver_ended=True) == []
    driver_requeue = pytest.raises(ForbiddenTransition, match="'running' -> 'queued' is not allowed for the driver")
    with driver_requeue, factory.begin() as s:
        requeue_trials(s, sweep_id=sweep_id, actor="driver")


def test_set_sweep_spec_replaces_the_stored_spec(factory, make_sweep) -> None:
    sweep_id, _ = make_sweep("spec", n=1)
    spec = {"seeds": [0, 1], "extensions": [{"first_idx": 1, "n_trials": 1, "patch": {"seeds": [0, 1]}}]}
    with factory.begin() as s:
        set_sweep_spec(s, sweep_id=sweep_id, spec=spec)
    with factory() as s:
        assert get_sweep(s, sweep_id=sweep_id).spec == spec
