"""Issue 12, fault 6: a non-finite loss ends the trial failed (`non_finite_loss`, with its epoch) and is not
retried; an out-of-memory error (injected at a batch) halves the training batch size down to a floor, and the size
used is recorded on the trial. The halving itself runs without Ray (seconds); one Ray run proves the whole path
(trainable -> Tune with the driver's FailureConfig -> the writer -> the trial rows)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
import torch
from testkit.faults import store_with_trials, trial_rows, tuner_for

from search_spaces.config import TrialConfig
from workers import trainable
from workers.trainable import MIN_BATCH_SIZE, OutOfMemoryAtFloor, fit_with_oom_retry

pytestmark = pytest.mark.faults
CPU = torch.device("cpu")
TINY = {"depths": (1, 1, 1), "widths": (1, 1, 1), "dataset": "synthetic", "n_train": 256, "val_size": 64,
        "n_test": 64, "epochs": 2, "batch_size": 64, "lr": 0.05, "train_attack": {"steps": 1, "step_size": 0.01},
        "eval_attack": {"steps": 1, "step_size": None}}


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(epoch, batch size) of every epoch the trainable would report to Tune (no Tune session here)."""
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(trainable, "_report_epoch",
                        lambda m, s, *, base: seen.append((m["epoch"], base["batch_size_used"])))
    return seen


def test_oom_halves_the_batch_size_until_it_fits(reports) -> None:
    base = {"batch_size_used": 64}
    state, rows = fit_with_oom_retry(TrialConfig(**TINY), device=CPU, data_root=None, resume=None, base=base,
                                     inject={"oom_at_batch": 1, "oom_above_batch_size": 16})
    assert base["batch_size_used"] == 16  # 64 and 32 ran out of memory at batch 1, 16 fits
    assert reports == [(1, 16), (2, 16)] and state.epoch == 2 and len(rows) == 2


def test_oom_in_a_later_epoch_continues_from_the_last_epoch(reports, monkeypatch) -> None:
    """Out of memory from epoch 2 on: epoch 1 ran at 64 and is not repeated; epochs 2 and 3 run at 32."""
    batches: list[tuple[int, int]] = []  # (epoch, batch size) of every training batch started
    armed = trainable.batch_hook({"oom_at_batch": 1, "oom_above_batch_size": 32})

    def hook(t, epoch: int, batch: int) -> None:
        batches.append((epoch, t.cfg.batch_size))
        if epoch >= 1:
            armed(t, epoch, batch)

    monkeypatch.setattr(trainable, "batch_hook", lambda inject: hook)
    base = {"batch_size_used": 64}
    state, _ = fit_with_oom_retry(TrialConfig(**{**TINY, "epochs": 3}), device=CPU, data_root=None, resume=None,
                                  base=base, inject={"any": 1})
    assert reports == [(1, 64), (2, 32), (3, 32)] and state.epoch == 3
    assert batches.count((0, 64)) == 256 // 64  # epoch 1 ran once, at 64
    assert batches.count((1, 64)) == 2 and batches.count((1, 32)) == 256 // 32  # OOM at batch 1, then a full epoch


def test_oom_at_the_floor_ends_the_trial(reports) -> None:
    base = {"batch_size_used": 32}
    with pytest.raises(OutOfMemoryAtFloor) as e:
        fit_with_oom_retry(TrialConfig(**{**TINY, "batch_size": 32}), device=CPU, data_root=None, resume=None,
                           base=base, inject={"oom_at_batch": 0})
    assert base["batch_size_used"] == MIN_BATCH_SIZE and e.value.epoch == 1 and reports == []
    assert str(e.value) == f"out_of_memory at epoch 1 with batch size {MIN_BATCH_SIZE} (floor {MIN_BATCH_SIZE})"


@pytest.mark.ray
def test_nan_fails_without_retry_and_oom_records_the_batch_size(ray_local) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="rgf-"))
    url = f"sqlite:///{tmp / 'rg.db'}"
    cfg = {**TINY, "epochs": 3}
    sweep_id, ids = store_with_trials(url, [cfg, cfg, cfg])
    nan, oom, floor = ids
    t0 = time.monotonic()
    tuner_for(url, sweep_id, {nan: cfg, oom: cfg, floor: cfg}, storage=tmp / "ray_results",
              inject={nan: {"nan_at_epoch": 2}, oom: {"oom_at_batch": 1, "oom_above_batch_size": 16},
                      floor: {"oom_at_batch": 0}}).fit()
    seconds = time.monotonic() - t0
    got = trial_rows(url, sweep_id)
    assert got[nan]["status"] == "failed" and got[nan]["error"] == "non_finite_loss at epoch 2"
    assert got[nan]["retries"] == 0 and got[nan]["epochs"] == [1]
    assert got[oom]["status"] == "completed" and got[oom]["batch_size_used"] == 16 and got[oom]["retries"] == 0
    assert got[oom]["epochs"] == [1, 2, 3] and got[oom]["finals"] == 2
    assert got[floor]["status"] == "failed" and got[floor]["retries"] == 0
    assert got[floor]["error"] == f"out_of_memory at epoch 1 with batch size {MIN_BATCH_SIZE} (floor {MIN_BATCH_SIZE})"
    assert got[floor]["batch_size_used"] == MIN_BATCH_SIZE and got[floor]["epochs"] == []
    print(f"nan/oom/floor sweep: {seconds:.1f} s")
