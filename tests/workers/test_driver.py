"""The driver's wind-down (its safety net after the last launch) on a real SQLite store, no Ray runtime needed."""

from __future__ import annotations

from db.engine import make_engine, session_factory, upgrade
from db.sweeps import add_trials, create_sweep, list_trials, mark_trial, set_sweep_status
from workers.driver import wind_down


def _row(i: int) -> dict:
    return {"config": {"seed": i}, "config_hash": f"h{i}", "arch": "wrn-d1-1-1-w1-1-1", "depths": "1-1-1",
            "widths": "1-1-1", "params": 1000, "macs": 2000, "method": "sat", "lam": 1.0, "eps": 8 / 255,
            "norm": "linf", "dataset": "synthetic", "n_train": 128, "seed": i}


def test_wind_down_fails_its_own_unfinished_trials_and_leaves_an_extension_alone(tmp_path) -> None:
    """The race behind a once-seen flake: the first driver's sweep is completed in the DB while the driver still
    winds down; an extension adds trial idx 2 (queued, its own driver). The first driver's safety net, bounded by
    the last idx it knew at start (1), must not fail the extension's trial."""
    engine = make_engine(f"sqlite:///{tmp_path / 'rg.db'}")
    upgrade(engine)
    make_session = session_factory(engine)
    with make_session.begin() as s:
        sweep = create_sweep(s, name="wd", spec={}, trials=[_row(0), _row(1)], code_version="t")
        sweep_id, (a, b) = sweep.id, [t.id for t in sweep.trials]
        mark_trial(s, trial_id=a, status="running", actor="writer")
        mark_trial(s, trial_id=a, status="completed", actor="writer")
        mark_trial(s, trial_id=b, status="running", actor="writer")  # the driver died around it, say
    with make_session.begin() as s:
        (ext,) = [t.id for t in add_trials(s, sweep_id=sweep_id, trials=[_row(2)])]
        set_sweep_status(s, sweep_id=sweep_id, status="queued", actor="api")

    assert wind_down(make_session, sweep_id, last_idx=1) == "running"  # the extension's trial is still to run
    with make_session() as s:
        got = {t.id: (t.status, t.error) for t in list_trials(s, sweep_id=sweep_id)}
    assert got == {a: ("completed", None), b: ("failed", "the driver ended without finishing this trial"),
                   ext: ("queued", None)}

    with make_session.begin() as s:
        set_sweep_status(s, sweep_id=sweep_id, status="cancelling", actor="api")  # a cancel under way
    assert wind_down(make_session, sweep_id, last_idx=None) == "cancelling"  # unbounded (a search sweep): all;
    # the api ends the cancel once the job has stopped
    with make_session() as s:
        assert {t.id: t.status for t in list_trials(s, sweep_id=sweep_id)}[ext] == "cancelled"
    engine.dispose()
