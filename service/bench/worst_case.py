"""Benchmark: every route of the API and the pages with its worst-case input, timed through HTTP against
`robustgrid serve` on a fresh SQLite store (docs/worst-case.md holds the table it printed). Not a test.

    python -m service.bench.worst_case [--rows 100000] [--dir /tmp/rg-worst] [--repeat 3] [--only pareto]

The store holds the worst data a client can make the API read: an imported reference sweep of `--rows` identical
rows (the same parameters, MACs, accuracies and counts; seeds 0..rows-1, so each is its own trial), which is what
made the Pareto noise check quadratic (6,500 rows: /pareto 5.8 s, the plot 29.5 s, the sweep page 40.6 s), a
grid sweep of max_trials trials, and a trial with MAX_EPOCHS per-epoch rows. Ray is a closed port, so submitting
stores the sweep and answers 503 at the launch (the worst a client can make the API itself do). Each route is
timed `--repeat` times (the median is printed) with a 600 s client timeout.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from db.engine import make_engine, session_factory, upgrade
from db.models import EpochMetric, FinalResult, Sweep, Trial
from search_spaces.config import MAX_EPOCHS, MAX_STAGE_DEPTH

WRN34 = (46_160_474, 6_658_906_368)  # params, MACs of wrn-d5-5-5-w10-10-10


def build_identical(url: str, n: int, *, name: str | None = None) -> int:
    """An imported sweep of n trials whose best pgd20 rows are identical but for the seed; returns its id."""
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        sweep = Sweep(name=name or f"identical-{n}", spec={}, status="completed", code_version="bench", n_trials=n,
                      imported=True, source="service.bench.worst_case")
        s.add(sweep)
        s.flush()
        params, macs = WRN34
        s.execute(insert(Trial), [
            {"sweep_id": sweep.id, "idx": i, "config": {}, "config_hash": f"h{i}", "arch": "wrn-d5-5-5-w10-10-10",
             "depths": "5-5-5", "widths": "10-10-10", "params": params, "macs": macs, "method": "trades",
             "lam": 6.0, "eps": 8 / 255, "norm": "linf", "dataset": "cifar10", "n_train": None, "seed": i,
             "status": "completed", "code_version": "bench"} for i in range(n)])
        stored = s.execute(select(Trial.id, Trial.sweep_id, Trial.params, Trial.macs)
                           .where(Trial.sweep_id == sweep.id).order_by(Trial.idx)).all()
        s.execute(insert(FinalResult), [
            {"trial_id": t.id, **FinalResult.copied_from(t), "checkpoint": "best", "attack": "pgd20", "epoch": 10,
             "clean_acc": 0.8, "robust_acc": 0.5, "stability": 0.6, "n_total": 10_000, "n_correct": 8000,
             "n_stable": 6000, "n_robust": 5000} for t in stored])
        sweep_id = sweep.id
    engine.dispose()
    return sweep_id


def build_long_trial(url: str, epochs: int = MAX_EPOCHS) -> int:
    """A sweep of one trial with `epochs` per-epoch rows (the most a TrialConfig trains); returns the trial's id."""
    engine = make_engine(url)
    with session_factory(engine).begin() as s:
        sweep = Sweep(name=f"long-{epochs}", spec={}, status="completed", code_version="bench", n_trials=1,
                      imported=True, source="service.bench.worst_case")
        s.add(sweep)
        s.flush()
        trial = Trial(sweep_id=sweep.id, idx=0, config={}, config_hash="long", arch="wrn-d1-1-1-w1-1-1",
                      depths="1-1-1", widths="1-1-1", params=77_850, macs=12_501_632, method="sat", lam=1.0,
                      eps=8 / 255, norm="linf", dataset="cifar10", seed=0, status="completed", code_version="bench")
        s.add(trial)
        s.flush()
        rng = random.Random(0)
        s.execute(insert(EpochMetric), [
            {"trial_id": trial.id, "epoch": e, "clean_acc": rng.random(), "robust_acc": rng.random() / 2,
             "clean_loss_train": rng.random(), "adv_loss_train": rng.random(), "lr": 0.1} for e in range(epochs)])
        trial_id = trial.id
    engine.dispose()
    return trial_id
