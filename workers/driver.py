"""The sweep driver, run as a Ray job: `python -m workers.driver SWEEP_ID`.

It reads the sweep's stored trial configs, runs every one of them once as a Ray Tune trial (or continues an
interrupted experiment with `Tuner.restore`), and leaves the writing of results to the DBWriter callback.
Settings come from the environment the launcher gives the job: ROBUSTGRID_DATABASE_URL, ROBUSTGRID_DATA_ROOT,
ROBUSTGRID_STORAGE_PATH, ROBUSTGRID_RAY_ADDRESS.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import ray
from ray import tune

from db.engine import make_engine, session_factory
from db.sweeps import get_sweep, list_trials, mark_trial, refresh_sweep_status, set_sweep_status
from workers.db_writer import DBWriter
from workers.trainable import run_trial

log = logging.getLogger("workers.driver")


def experiment_name(sweep_id: int, sweep_name: str) -> str:
    """Unique per sweep even across databases sharing one storage path (ids restart in a new database)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", sweep_name)[:80]
    return f"sweep-{sweep_id}-{safe}"


def trial_resources(cluster_gpus: float) -> dict[str, float]:
    """One CPU per trial; one GPU per trial where the cluster has GPUs (fractional placement: search_spaces)."""
    return {"cpu": 1, "gpu": 1} if cluster_gpus >= 1 else {"cpu": 1}


def build_tuner(sweep_id: int, *, database_url: str, storage_path: str, data_root: str | None) -> tune.Tuner:
    """A Tuner over the sweep's stored trials; `Tuner.restore` when the experiment already exists (finished
    trials are never run again; unfinished ones continue from their last checkpoint; failed ones stay failed)."""
    make_session = session_factory(make_engine(database_url))
    with make_session() as s:
        sweep = get_sweep(s, sweep_id=sweep_id)
        if sweep is None:
            raise SystemExit(f"sweep {sweep_id} does not exist in {database_url}")
        name = experiment_name(sweep_id, sweep.name)
        spaces = [{"trial_id": t.id, "config": t.config, "data_root": data_root}
                  for t in list_trials(s, sweep_id=sweep_id)]
    trainable = tune.with_resources(run_trial, trial_resources(ray.cluster_resources().get("GPU", 0.0)))
    path = str(Path(storage_path) / name)
    if tune.Tuner.can_restore(path):
        log.info("restoring experiment %s", path)
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False)
    return tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(spaces)},
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=False, trial_name_creator=_trial_name,
                                    trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=[DBWriter(database_url, sweep_id)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=0,
        ),
    )


def _trial_name(trial: Any) -> str:
    return f"trial-{trial.config['trial']['trial_id']}"


def run(sweep_id: int) -> int:
    database_url = os.environ["ROBUSTGRID_DATABASE_URL"]
    storage_path = os.environ.get("ROBUSTGRID_STORAGE_PATH") or str(Path.cwd() / "ray_results")
    data_root = os.environ.get("ROBUSTGRID_DATA_ROOT") or None
    address = os.environ.get("ROBUSTGRID_RAY_ADDRESS") or None
    if not ray.is_initialized():
        ray.init(address=address or "auto", log_to_driver=False)
    make_session = session_factory(make_engine(database_url))
    with make_session.begin() as s:
        set_sweep_status(s, sweep_id=sweep_id, status="running")
    tuner = build_tuner(sweep_id, database_url=database_url, storage_path=storage_path, data_root=data_root)
    tuner.fit()
    with make_session.begin() as s:
        for t in list_trials(s, sweep_id=sweep_id):  # safety net: no trial stays queued or running silently
            if t.status in ("queued", "running"):
                mark_trial(s, trial_id=t.id, status="failed", error="the driver ended without finishing this trial")
        status = refresh_sweep_status(s, sweep_id=sweep_id)
    log.info("sweep %d finished: %s", sweep_id, status)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.driver", description=__doc__)
    parser.add_argument("sweep_id", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run(args.sweep_id)


if __name__ == "__main__":
    sys.exit(main())
