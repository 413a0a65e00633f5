"""Issue 12, fault 1: SIGKILL a trial's worker process mid-epoch. The trial resumes from its last checkpoint at that
epoch + 1 (not epoch 0), every epoch row exists exactly once, and the retry is counted on the trial."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ray.tune import Callback
from testkit.faults import store_with_trials, trial_rows, tuner_for

pytestmark = [pytest.mark.faults, pytest.mark.ray]
CFG = {"depths": (1, 1, 1), "widths": (1, 1, 1), "dataset": "synthetic", "n_train": 1024, "val_size": 64,
       "n_test": 64, "epochs": 4, "batch_size": 64, "lr": 0.05, "train_attack": {"steps": 1, "step_size": 0.01},
       "eval_attack": {"steps": 1, "step_size": None}}


class KillAfterEpoch(Callback):
    """SIGKILLs the worker process of the trial (Tune's own `pid` of its result) once, half a second after it
    reported epoch `after`, from a timer thread (so Tune has registered that epoch's checkpoint); records the last
    epoch reported before the kill and the epochs reported after it."""

    def __init__(self, after: int):
        self.after, self.killed_at, self.later = after, None, []
        self.last = 0

    def _kill(self, pid: int) -> None:
        self.killed_at = self.last  # the worker is training epoch killed_at + 1 now
        os.kill(pid, signal.SIGKILL)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        if result.get("kind") != "epoch":
            return
        if self.killed_at is None:
            self.last = result["epoch"]
            if result["epoch"] == self.after:
                threading.Timer(0.5, self._kill, args=(result["pid"],)).start()
        else:
            self.later.append(result["epoch"])


def test_a_killed_worker_resumes_at_the_next_epoch(ray_local) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="rgkw-"))
    url = f"sqlite:///{tmp / 'rg.db'}"
    sweep_id, (tid,) = store_with_trials(url, [CFG])
    kill = KillAfterEpoch(after=2)
    t0 = time.monotonic()
    tuner_for(url, sweep_id, {tid: CFG}, storage=tmp / "ray_results", callbacks=[kill]).fit()
    seconds = time.monotonic() - t0
    got = trial_rows(url, sweep_id)[tid]
    k = kill.killed_at
    assert k in (2, 3)  # killed while training epoch 3 (or 4 on a slow machine)
    assert kill.later == list(range(k + 1, 5))  # resumed from epoch k's checkpoint at k + 1, never at epoch 1
    assert got["status"] == "completed" and got["retries"] == 1
    assert got["epochs"] == [1, 2, 3, 4] and got["dup_epochs"] == 0 and got["finals"] == 2
    print(f"killed worker in epoch {k + 1}: {seconds:.1f} s, resumed at {kill.later[0]}, retries {got['retries']}")
