"""The single writer (workers.db_writer.DBWriter) against a real SQLite store: typed reports land as rows, and a
trial that is no longer the writer's to change (cancelled by the api while its job was dying) is left alone
without taking the Tune loop down."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from db.engine import make_engine, session_factory, upgrade
from db.results import query_results
from db.sweeps import DRIVER_ENDED, create_sweep, end_unfinished_trials, get_trial, mark_trial, requeue_trials

ROW = {"checkpoint": "best", "attack": "pgd20", "epoch": 1, "robust_acc": 0.25, "n_total": 4, "n_correct": 2,
       "n_stable": 2, "n_robust": 1, "emp_lipschitz_blocks": None, "device_seconds": 0.5}


@pytest.fixture
def store(tmp_path: Path) -> tuple[Any, int, list[int]]:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)
    sessions = session_factory(make_engine(url))
    trials = [{"config": {}, "config_hash": f"h{i}", "arch": "wrn-d1-1-1-w1-1-1", "depths": "1-1-1", "widths": "1-1-1",
               "params": 1, "macs": 1, "method": "sat", "lam": 1.0, "eps": 8 / 255, "norm": "linf",
               "dataset": "synthetic", "n_train": None, "seed": i} for i in range(3)]
    with sessions.begin() as s:
        sweep = create_sweep(s, name="w", spec={}, trials=trials, code_version="test")
        return (url, sessions), sweep.id, [t.id for t in sweep.trials]


def _trial(tid: int) -> Any:
    return SimpleNamespace(config={"trial": {"trial_id": tid}}, last_result={}, trial_id=f"t{tid}")


def test_writer_stores_typed_reports_and_provenance(store) -> None:
    from workers.db_writer import DBWriter

    (url, sessions), sweep_id, (tid, *_) = store
    writer = DBWriter(url, sweep_id)
    writer.on_trial_start(0, [], _trial(tid))
    writer.on_trial_result(0, [], _trial(tid), {"kind": "epoch", "epoch": 1, "clean_loss_val": 0.7, "lr": 0.1,
                                                "device_seconds": 2.0, "lam_trajectory": [1.0, 1.1], "params": 1,
                                                "trial_device_seconds": 2.0, "device": "cpu", "node": "h 1.2.3.4"})
    writer.on_trial_result(0, [], _trial(tid), {"kind": "final", "final_rows": [ROW], "trial_device_seconds": 3.5,
                                                "device": "cpu", "node": "h 1.2.3.4"})
    with sessions() as s:
        t = get_trial(s, trial_id=tid)
        assert (t.status, t.device_seconds, t.device, t.node) == ("completed", 3.5, "cpu", "h 1.2.3.4")
        (epoch,) = query_results(s, filters={"trial": tid}, kind="epoch")
        (final,) = query_results(s, filters={"trial": tid})
    assert (epoch["clean_loss_val"], epoch["device_seconds"]) == (0.7, 2.0)
    assert (final["robust_acc"], final["n_robust"], final["device_seconds"]) == (0.25, 1, 0.5)


def test_a_trial_cancelled_under_the_writer_stays_cancelled(store, caplog) -> None:
    from workers.db_writer import DBWriter

    (url, sessions), sweep_id, (tid, *_) = store
    writer = DBWriter(url, sweep_id)
    writer.on_trial_start(0, [], _trial(tid))
    with sessions.begin() as s:  # the api cancels while the job is still dying
        mark_trial(s, trial_id=tid, status="cancelled", actor="api", error="cancelled by the user")
    writer.on_trial_result(0, [], _trial(tid), {"kind": "final", "final_rows": [ROW], "trial_device_seconds": 3.5})
    writer.on_trial_error(0, [], SimpleNamespace(**vars(_trial(tid)), pickled_error_file=None, error_file=None))
    with sessions() as s:
        assert get_trial(s, trial_id=tid).status == "cancelled"
        assert len(query_results(s, filters={"trial": tid})) == 1  # the measured row is kept
    assert "not marked completed" in caplog.text and "not marked failed" in caplog.text


def test_resume_requeues_only_the_trials_the_wind_down_failed(store) -> None:
    (url, sessions), sweep_id, (a, b, c) = store
    with sessions.begin() as s:
        mark_trial(s, trial_id=a, status="running", actor="writer")
        mark_trial(s, trial_id=a, status="failed", actor="writer", error="non_finite_loss at epoch 2")
        mark_trial(s, trial_id=b, status="running", actor="writer")
        assert end_unfinished_trials(s, sweep_id=sweep_id, status="failed", error=DRIVER_ENDED,
                                     actor="driver") == [b, c]
    with sessions.begin() as s:
        assert requeue_trials(s, sweep_id=sweep_id, actor="api", driver_ended=True) == [b, c]
    with sessions() as s:
        assert [get_trial(s, trial_id=t).status for t in (a, b, c)] == ["failed", "queued", "queued"]
        assert get_trial(s, trial_id=b).error is None
