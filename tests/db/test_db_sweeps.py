"""Sweeps and trials contract (SQLite and PostgreSQL): atomic creation, look-ups, status bookkeeping."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from db.contract import EpochReport
from db.models import EpochMetric, Sweep, Trial
from db.results import upsert_epoch
from db.sweeps import (
    ForbiddenTransition,
    NotFound,
    SweepExists,
    create_sweep,
    derive_sweep_status,
    get_sweep,
    get_sweep_by_name_or_id,
    get_trial,
    list_sweeps,
    list_trials,
    mark_trial,
    refresh_sweep_status,
    set_sweep_job,
    set_sweep_status,
    trial_status_counts,
)


def _count(factory, model) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_create_sweep_writes_sweep_and_trials(factory, trial_dict) -> None:
    with factory.begin() as s:
        sweep = create_sweep(s, name="grid", spec={"preset": "depth"}, trials=[trial_dict(i) for i in range(3)],
                             code_version="v1")  # fmt: skip
        sweep_id = sweep.id
    assert [t.idx for t in sweep.trials] == [0, 1, 2] and all(t.id for t in sweep.trials)  # loaded, detached
    with factory() as s:
        sweep = get_sweep(s, sweep_id=sweep_id)
        assert sweep is not None
        assert (sweep.name, sweep.status, sweep.n_trials, sweep.code_version) == ("grid", "queued", 3, "v1")
        assert sweep.spec == {"preset": "depth"} and sweep.created_at is not None and sweep.ray_job_id is None
        trials = list_trials(s, sweep_id=sweep_id)
        assert [t.idx for t in trials] == [0, 1, 2]
        assert all(t.status == "queued" and t.code_version == "v1" for t in trials)
        t1 = get_trial(s, trial_id=trials[1].id)
        assert t1 is not None
        assert (t1.arch, t1.depths, t1.widths, t1.n_train, t1.params) == (
            "wrn-d3-3-3-w4-4-4", "3-3-3", "4-4-4", 10_000, 2_000_001)
        assert t1.eps == pytest.approx(8 / 255, abs=0) and t1.config["seed"] == 1
        assert trials[0].params == 46_160_474 and trials[0].macs == 6_658_906_368  # BigInteger
        assert get_trial(s, trial_id=10**9) is None and get_sweep(s, sweep_id=10**9) is None


def test_duplicate_name_raises_sweep_exists(factory, make_sweep, trial_dict) -> None:
    sweep_id, _ = make_sweep("dup", n=2)
    with pytest.raises(SweepExists), factory.begin() as s:
        create_sweep(s, name="dup", spec={}, trials=[trial_dict(0)], code_version="v2")
    assert issubclass(SweepExists, ValueError)
    assert _count(factory, Sweep) == 1 and _count(factory, Trial) == 2


def test_create_sweep_is_atomic_on_duplicate_config_hash(factory, trial_dict) -> None:
    trials = [trial_dict(0), trial_dict(1), trial_dict(2, config_hash="hash-0000")]
    with pytest.raises(IntegrityError), factory.begin() as s:
        create_sweep(s, name="bad", spec={}, trials=trials, code_version="v1")
    assert _count(factory, Sweep) == 0 and _count(factory, Trial) == 0


def test_create_sweep_is_atomic_on_bad_trial_row(factory, trial_dict) -> None:
    bad = trial_dict(1)
    del bad["arch"]  # NOT NULL
    with pytest.raises(IntegrityError), factory.begin() as s:
        create_sweep(s, name="bad", spec={}, trials=[trial_dict(0), bad], code_version="v1")
    assert _count(factory, Sweep) == 0 and _count(factory, Trial) == 0


def test_create_sweep_rejects_unknown_trial_key(factory, trial_dict) -> None:
    with pytest.raises(ValueError, match="bogus"), factory.begin() as s:
        create_sweep(s, name="x", spec={}, trials=[trial_dict(0, bogus=1)], code_version="v1")
    assert _count(factory, Sweep) == 0


def test_lookups(factory, make_sweep) -> None:
    a, _ = make_sweep("alpha", n=1)
    b, _ = make_sweep("beta", n=1)
    with factory() as s:
        assert [x.name for x in list_sweeps(s)] == ["alpha", "beta"]
        assert get_sweep_by_name_or_id(s, ref="beta").id == b
        assert get_sweep_by_name_or_id(s, ref=str(a)).name == "alpha"
        assert get_sweep_by_name_or_id(s, ref="gamma") is None


def test_numeric_name_falls_back_to_name(factory, make_sweep) -> None:
    sid, _ = make_sweep("777", n=1)
    with factory() as s:
        assert get_sweep_by_name_or_id(s, ref="777").id == sid


def test_mark_trial_and_counts(factory, make_sweep) -> None:
    sid, tids = make_sweep("run", n=4)
    with factory.begin() as s:
        t = mark_trial(s, trial_id=tids[0], status="running", actor="writer")
        assert t.started_at is not None and t.ended_at is None
    with factory.begin() as s:
        mark_trial(s, trial_id=tids[0], status="completed", device_seconds=12.5, actor="writer")
        mark_trial(s, trial_id=tids[1], status="failed", error="CUDA OOM", actor="writer")
        mark_trial(s, trial_id=tids[2], status="running", actor="writer")
    with factory() as s:
        counts = trial_status_counts(s, sweep_id=sid)
        assert counts == {"queued": 1, "running": 1, "completed": 1, "failed": 1, "cancelled": 0, "stopped": 0}
        t0, t1 = get_trial(s, trial_id=tids[0]), get_trial(s, trial_id=tids[1])
        assert t0.ended_at is not None and t0.device_seconds == 12.5 and t0.started_at <= t0.ended_at
        assert t1.status == "failed" and t1.error == "CUDA OOM" and t1.ended_at is not None
    with factory.begin() as s:  # cancelled, requeued, resumed: it keeps its first start and loses its old error
        first_start = get_trial(s, trial_id=tids[2]).started_at
        mark_trial(s, trial_id=tids[2], status="cancelled", error="cancelled by the user", actor="api")
        t = mark_trial(s, trial_id=tids[2], status="queued", actor="api")
        assert (t.error, t.ended_at, t.started_at) == (None, None, first_start)
        t = mark_trial(s, trial_id=tids[2], status="running", actor="writer")
        assert (t.error, t.ended_at, t.started_at) == (None, None, first_start)
    with pytest.raises(ValueError, match="bogus"), factory.begin() as s:
        mark_trial(s, trial_id=tids[0], status="bogus", actor="writer")
    with pytest.raises(ValueError, match="actor"), factory.begin() as s:
        mark_trial(s, trial_id=tids[3], status="running", actor="scheduler")
    with pytest.raises(NotFound), factory.begin() as s:
        mark_trial(s, trial_id=10**9, status="running", actor="writer")


def test_refresh_sweep_status_lifecycle(factory, make_sweep) -> None:
    sid, tids = make_sweep("life", n=3)

    def step(*updates: tuple[int, str]) -> str:
        with factory.begin() as s:
            for i, status in updates:
                mark_trial(s, trial_id=tids[i], status=status, actor="writer")
            status = refresh_sweep_status(s, sweep_id=sid, actor="driver")
        with factory() as s:
            assert get_sweep(s, sweep_id=sid).status == status  # stored
        return status

    assert step() == "queued"
    assert step((0, "running")) == "running"
    assert step((0, "completed")) == "running"  # one done, two queued: started
    assert step((1, "failed"), (2, "running"), (2, "stopped")) == "completed"  # a failed trial does not fail it


def test_refresh_all_failed_and_cancelled_sticky(factory, make_sweep) -> None:
    sid, tids = make_sweep("fail", n=2)
    with factory.begin() as s:
        for t in tids:
            mark_trial(s, trial_id=t, status="failed", actor="writer")
        with pytest.raises(ForbiddenTransition, match="'queued' -> 'failed' is not allowed for the writer"):
            refresh_sweep_status(s, sweep_id=sid, actor="writer")  # the writer owns trial rows, not the sweep's
        assert refresh_sweep_status(s, sweep_id=sid, actor="driver") == "failed"
    sid2, tids2 = make_sweep("cancel", n=2)
    with factory.begin() as s:
        set_sweep_status(s, sweep_id=sid2, status="running", actor="driver")
        mark_trial(s, trial_id=tids2[0], status="running", actor="writer")
        set_sweep_status(s, sweep_id=sid2, status="cancelling", actor="api")
        mark_trial(s, trial_id=tids2[0], status="completed", actor="writer")
        assert refresh_sweep_status(s, sweep_id=sid2, actor="driver") == "cancelling"  # sticky
        set_sweep_status(s, sweep_id=sid2, status="cancelled", actor="api")
        mark_trial(s, trial_id=tids2[1], status="cancelled", actor="api")
        assert refresh_sweep_status(s, sweep_id=sid2, actor="driver") == "cancelled"  # sticky
    with pytest.raises(ValueError, match="done"), factory.begin() as s:
        set_sweep_status(s, sweep_id=sid2, status="done", actor="api")
    with pytest.raises(NotFound), factory.begin() as s:
        refresh_sweep_status(s, sweep_id=10**9, actor="driver")


@pytest.mark.parametrize(
    ("current", "counts", "expected"),
    [
        ("queued", {"queued": 3}, "queued"),
        ("queued", {"queued": 2, "running": 1}, "running"),
        ("queued", {"queued": 2, "completed": 1}, "running"),
        ("running", {"completed": 2, "failed": 1}, "completed"),
        ("running", {"failed": 3}, "failed"),
        ("running", {"cancelled": 3}, "failed"),  # no cancel asked for: its job ended with nothing finished
        ("running", {"failed": 1, "cancelled": 2}, "failed"),
        ("running", {"failed": 2, "stopped": 1}, "completed"),
        ("running", {"stopped": 2, "completed": 1}, "completed"),
        ("failed", {"queued": 1, "completed": 2}, "failed"),  # the job died: stays failed until resumed
        ("failed", {"completed": 3}, "completed"),
        ("cancelled", {"running": 1}, "cancelled"),
        ("cancelling", {"running": 1, "completed": 1}, "cancelling"),
        ("cancelling", {"completed": 2}, "cancelling"),
        ("queued", {}, "queued"),
    ],
)
def test_derive_sweep_status(current, counts, expected) -> None:
    assert derive_sweep_status(current, counts) == expected


def test_set_sweep_job(factory, make_sweep) -> None:
    sid, _ = make_sweep("job", n=1)
    with factory.begin() as s:
        set_sweep_job(s, sweep_id=sid, ray_job_id="raysubmit_123", dashboard_url="http://127.0.0.1:8265")
    with factory() as s:
        sw = get_sweep(s, sweep_id=sid)
        assert (sw.ray_job_id, sw.dashboard_url) == ("raysubmit_123", "http://127.0.0.1:8265")


def test_deleting_a_sweep_cascades(factory, make_sweep) -> None:
    sid, tids = make_sweep("gone", n=2)
    with factory.begin() as s:
        upsert_epoch(s, trial_id=tids[0], report=EpochReport(epoch=1, clean_acc=0.5))
    with factory.begin() as s:
        s.execute(delete(Sweep).where(Sweep.id == sid))  # database-level ON DELETE CASCADE
    assert _count(factory, Trial) == 0 and _count(factory, EpochMetric) == 0
