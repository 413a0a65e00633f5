"""Live progress of a sweep: epochs done per trial from the store (db.progress) and the CLI's bars with an ETA."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from db.contract import EpochReport
from db.engine import make_engine, session_factory, upgrade
from db.progress import TrialProgress, trial_progress
from db.results import upsert_epoch
from db.sweeps import create_sweep, mark_trial
from service.cli.progress import SweepProgress


def test_trial_progress_counts_epoch_rows_against_the_planned_epochs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    upgrade(url)
    sessions = session_factory(make_engine(url))
    trials = [{"config": {"epochs": 4}, "config_hash": f"h{i}", "arch": f"a{i}", "depths": "1-1-1", "widths": "1-1-1",
               "params": 1, "macs": 1, "method": "sat", "lam": 1.0, "eps": 0.0, "norm": "linf", "dataset": "synthetic",
               "n_train": None, "seed": i} for i in range(3)]
    with sessions.begin() as s:
        sweep = create_sweep(s, name="p", spec={}, trials=trials, code_version="t")
        a, b, _ = (t.id for t in sweep.trials)
        mark_trial(s, trial_id=a, status="running", actor="writer")
        for e in (1, 2, 3):
            upsert_epoch(s, trial_id=a, report=EpochReport(epoch=e))
        upsert_epoch(s, trial_id=a, report=EpochReport(epoch=3))  # a replay is one row
        mark_trial(s, trial_id=b, status="running", actor="writer")
    with sessions() as s:
        got = trial_progress(s, sweep_id=sweep.id)
    assert [(p.arch, p.status, p.epochs_done, p.epochs_total) for p in got] == [
        ("a0", "running", 3, 4), ("a1", "running", 0, 4), ("a2", "queued", 0, 4)]


def _trials(done: int, status: str = "running") -> list[TrialProgress]:
    return [TrialProgress(id=1, idx=0, arch="wrn-a", status=status, epochs_done=done, epochs_total=4),
            TrialProgress(id=2, idx=1, arch="wrn-b", status="queued", epochs_done=0, epochs_total=4)]


def test_plain_lines_on_a_pipe_once_per_change() -> None:
    out = io.StringIO()
    with SweepProgress(7, console=Console(file=out, force_terminal=False, width=120)) as bars:
        bars.update("running", _trials(1))
        bars.update("running", _trials(1))  # nothing new: no line
        bars.update("running", _trials(4, "completed"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("sweep 7 running: queued 1, running 1; 1/8 epochs")
    assert lines[1].endswith("sweep 7 running: completed 1, queued 1; 4/8 epochs")


def test_bars_on_a_terminal_show_trials_epochs_and_an_eta() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140)
    with SweepProgress(7, console=console) as bars:
        bars.update("running", _trials(2))
        bars.update("running", _trials(4, "completed"))
        tasks = {t.description.strip(): (t.completed, t.total) for t in bars.progress.tasks}
    assert tasks["sweep 7 running (completed 1, queued 1)"] == (4, 8)
    assert tasks["trial 1 wrn-a completed"] == (4, 4)
    assert "ETA" in out.getvalue() and "epochs" in out.getvalue()
