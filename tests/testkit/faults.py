"""Helpers of the fault-tolerance tests (tests/faults/): a store with trials of given configs, a Tuner built the
way the driver builds one (the trainable, the DB writer, the driver's FailureConfig) with extra callbacks and
injected faults, and each trial's rows as the pass criteria read them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db.engine import make_engine, session_factory, upgrade
from db.models import EpochMetric, FinalResult
from db.sweeps import create_sweep, list_trials
from search_spaces.config import TrialConfig


def trial_row(i: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """A trial row for create_sweep holding TrialConfig(**cfg)."""
    c = TrialConfig(**cfg)
    return {"config": c.model_dump(mode="json"), "config_hash": f"h{i}", "arch": f"wrn-{i}", "depths": "1-1-1",
            "widths": "1-1-1", "params": 1000, "macs": 2000, "method": c.method, "lam": c.lam, "eps": c.eps,
            "norm": c.norm, "dataset": "synthetic", "n_train": c.n_train, "seed": c.seed}


def store_with_trials(url: str, cfgs: list[dict[str, Any]], name: str = "faults") -> tuple[int, list[int]]:
    """A migrated store at `url` with one queued sweep of these trial configs; (sweep id, trial ids)."""
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine).begin() as s:
        sweep = create_sweep(s, name=name, spec={}, trials=[trial_row(i, c) for i, c in enumerate(cfgs)],
                             code_version="test")
        out = sweep.id, [t.id for t in sweep.trials]
    engine.dispose()
    return out


def tuner_for(url: str, sweep_id: int, configs: dict[int, dict[str, Any]], *, storage: Path,
              inject: dict[int, dict[str, Any]] | None = None, callbacks: list[Any] | None = None,
              name: str = "faults") -> Any:
    """A Tuner over these trials (trial id -> config) as workers.driver builds one: run_trial, one CPU a trial,
    the DBWriter, the driver's failure_config(), one checkpoint kept."""
    from ray import tune

    from workers.db_writer import DBWriter
    from workers.driver import failure_config
    from workers.trainable import run_trial

    spaces = [{"trial_id": tid, "config": TrialConfig(**c).model_dump(mode="json"), "data_root": None,
               "known": {"params": 1000, "macs": 2000}, **({"inject": inject[tid]} if inject and tid in inject else {})}
              for tid, c in configs.items()]
    return tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, skip=frozenset()), {"CPU": 1}),
        param_space={"trial": tune.grid_search(spaces)},
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=False),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), verbose=0,
                                  callbacks=[DBWriter(url, sweep_id), *(callbacks or [])],
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  failure_config=failure_config()),
    )


def trial_rows(url: str | Any, sweep_id: int) -> dict[int, dict[str, Any]]:
    """Per trial id: status, error, retries, batch_size_used, node, its epoch numbers (sorted, duplicates kept),
    its final rows' count and how often any (epoch) row repeats (`dup_epochs`)."""
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            out = {}
            for t in list_trials(s, sweep_id=sweep_id):
                epochs = sorted(s.scalars(select(EpochMetric.epoch).where(EpochMetric.trial_id == t.id)).all())
                finals = s.scalars(select(FinalResult.id).where(FinalResult.trial_id == t.id)).all()
                out[t.id] = {"idx": t.idx, "status": t.status, "error": t.error, "retries": t.retries,
                             "batch_size_used": t.batch_size_used, "node": t.node, "epochs": epochs,
                             "finals": len(finals), "started_at": t.started_at, "ended_at": t.ended_at,
                             "dup_epochs": sum(n - 1 for n in Counter(epochs).values())}
            return out
    finally:
        engine.dispose()


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.2) -> Any:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
