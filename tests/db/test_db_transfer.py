"""Export a sweep with all its rows from one store and import it into another, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from db.engine import make_engine, session_factory, upgrade
from db.attempts import record_attempt
from db.contract import EpochReport, FinalRow
from db.results import query_results, upsert_epoch, upsert_final
from db.sweeps import SweepExists, create_sweep, mark_trial
from db.transfer import export_sweeps, import_sweeps

TRIAL = {"config": {"depths": [1, 1, 1]}, "arch": "wrn-d1-1-1-w1-1-1", "depths": "1-1-1", "widths": "1-1-1",
         "params": 77850, "macs": 12501632, "method": "sat", "lam": 1.0, "eps": 8 / 255, "norm": "linf",
         "dataset": "cifar10-jpeg", "n_train": 2000, "seed": 0}


def test_round_trip_between_two_stores(db_url, tmp_path) -> None:
    src = session_factory(make_engine(f"sqlite:///{tmp_path / 'src.db'}"))
    upgrade(src.kw["bind"])
    with src.begin() as s:
        sweep = create_sweep(s, name="study", spec={"name": "study"}, code_version="0.1.0+gabc",
                             trials=[TRIAL | {"config_hash": "h1"}, TRIAL | {"config_hash": "h2", "seed": 1}])
        t1 = sweep.trials[0].id
        upsert_epoch(s, trial_id=t1, report=EpochReport(epoch=1, robust_acc=0.3, lam_trajectory=[0.1, 0.2]))
        upsert_final(s, trial_id=t1, row=FinalRow(checkpoint="best", attack="pgd20", epoch=1, robust_acc=0.31,
                                                  n_total=100, emp_lipschitz_blocks=[1.0, 2.0], device_seconds=4.0))
        mark_trial(s, trial_id=t1, status="running", actor="writer")
        mark_trial(s, trial_id=t1, status="completed", actor="writer", device_seconds=12.5)
        record_attempt(s, trial_id=t1, device="cpu")
        sweep_id = sweep.id
    with src() as s:
        dump = json.loads(json.dumps(export_sweeps(s, sweep_ids=[sweep_id])))  # through JSON, as on disk
        before = query_results(s, filters={"sweep": "study"})

    dst = session_factory(make_engine(db_url))
    upgrade(dst.kw["bind"])
    with dst.begin() as s:
        (imported,) = import_sweeps(s, dump=dump)
        assert imported.name == "study" and len(imported.trials) == 2
    with dst() as s:
        after = query_results(s, filters={"sweep": "study"})
        curves = query_results(s, filters={"sweep": "study"}, kind="epoch")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "trial"} for r in rows]  # noqa: E731 - ids are new
    assert strip(after) == strip(before) and after[0]["robust_acc"] == 0.31 and after[0]["device_seconds"] == 4.0
    assert [c["robust_acc"] for c in curves] == [0.3]

    with dst.begin() as s, pytest.raises(SweepExists):
        import_sweeps(s, dump=dump)
    with dst.begin() as s:
        assert import_sweeps(s, dump=dump, suffix="-copy")[0].name == "study-copy"


def test_bad_dumps_write_nothing(db_url) -> None:
    sessions = session_factory(make_engine(db_url))
    upgrade(sessions.kw["bind"])
    with pytest.raises(ValueError, match="format"), sessions.begin() as s:
        import_sweeps(s, dump={"format": "other"})
    bad = {"format": "robustgrid-sweeps/1", "sweeps": [{"name": "x", "spec": {}, "status": "completed",
                                                         "code_version": "v", "n_trials": 0, "colour": 1, "trials": []}]}
    with pytest.raises(ValueError, match="colour"), sessions.begin() as s:
        import_sweeps(s, dump=bad)
    with sessions() as s, pytest.raises(LookupError, match="42"):
        export_sweeps(s, sweep_ids=[42])


def test_cli_export_then_import_into_another_database(tmp_path) -> None:
    import subprocess
    import sys

    src, dst, dump = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "dump.json"
    sessions = session_factory(make_engine(f"sqlite:///{src}"))
    upgrade(sessions.kw["bind"])
    with sessions.begin() as s:
        create_sweep(s, name="moved", spec={}, code_version="v", trials=[TRIAL | {"config_hash": "h"}])
    cli = [sys.executable, "-m", "service.cli", "results"]
    r = subprocess.run(cli + ["--database-url", f"sqlite:///{src}", "--export-sweeps", str(dump)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cli + ["--database-url", f"sqlite:///{dst}", "--import-sweeps", str(dump)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "imported 1 sweep(s): moved" in r.stderr, r.stderr
    r = subprocess.run(cli + ["--database-url", f"sqlite:///{dst}", "--import-sweeps", str(dump)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: sweep: a sweep named 'moved' already exists")


def test_import_of_a_format_1_dump_renames_its_columns(factory) -> None:
    """Dumps written before migration 0002 carry flops, gpu_seconds and per-epoch *_loss_test: they load renamed."""
    trial = {k: v for k, v in TRIAL.items() if k != "macs"} | {"flops": 12501632, "config_hash": "h1",
                                                                 "gpu_seconds": 9.0, "status": "completed"}
    dump = {"format": "robustgrid-sweeps/1", "sweeps": [{"name": "old", "spec": {}, "status": "completed",
            "code_version": "0.1.0", "n_trials": 1, "trials": [trial | {
                "idx": 0, "code_version": "0.1.0",
                "epochs": [{"epoch": 1, "adv_loss_test": 1.5, "clean_loss_test": 0.9, "seconds": 2.0}],
                "finals": [{"checkpoint": "best", "attack": "pgd20", "gpu_seconds": 1.0, "robust_acc": 0.4}]}]}]}
    with factory.begin() as s:
        import_sweeps(s, dump=dump)
    with factory() as s:
        (final,) = query_results(s, filters={"sweep": "old"})
        (epoch,) = query_results(s, filters={"sweep": "old"}, kind="epoch")
    assert (final["macs"], final["device_seconds"], final["robust_acc"]) == (12501632, 1.0, 0.4)
    assert (epoch["adv_loss_val"], epoch["clean_loss_val"], epoch["device_seconds"]) == (1.5, 0.9, 2.0)
