"""The sweep driver, run as a Ray job: `python -m workers.driver SWEEP_ID --context PATH`.

A sweep runs as one Tune experiment per launch: the first covers the trials stored at submission, each `extend`
adds a launch for the trials it appended (the stored spec lists them under `extensions`, each with the idx of its
first trial), so an extension never re-runs what exists. For each launch with work left the driver builds a Tuner
(grid: one Tune trial per stored trial; search: workers.tune_search's Optuna searcher creates trial rows as it
samples), or continues the launch's experiment with `Tuner.restore` when it exists (after the driver died).
Trials the database holds as completed or stopped are passed to the trainable as `skip`, so a configuration that
finished before a crash is never run again, even when Tune's experiment snapshot is older than the database.
Each trial asks Ray for a GPU share sized by its predicted memory (search_spaces.placement); CPUs only without GPUs.
Results are written by the DBWriter callback. Settings come explicitly, as a run context (search_spaces.run_context:
database URL, storage path, data root, optionally the memory of one GPU) in the JSON file the launcher wrote; the
driver hands them to the DB writer, the searcher and each trial. It reads no environment variable of the service.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Any

import ray
from pydantic import ValidationError
from ray import tune
from ray.tune import PlacementGroupFactory
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, session_factory
from db.sweeps import (
    DRIVER_ENDED,
    end_unfinished_trials,
    get_sweep,
    list_trials,
    max_trial_idx,
    refresh_sweep_status,
    set_sweep_status,
)
from search_spaces.config import TrialConfig, arch_key
from search_spaces.data_sizes import data_sizes
from search_spaces.placement import place, predict_memory_gib
from search_spaces.run_context import RunContext
from search_spaces.search import check_epochs
from search_spaces.spec import SweepSpec
from search_spaces.stored import StoredSweep
from workers.db_writer import DBWriter
from workers.memory_probe import act_elems_per_image
from workers.trainable import run_trial
from workers.tune_search import Candidate, make_scheduler, make_search_alg

log = logging.getLogger("workers.driver")

FINISHED = ("completed", "stopped")  # never run again
NOT_TO_START = (*FINISHED, "failed")  # a fresh experiment leaves these out
GPU_MEMORY_GIB = {"H200": 141.0, "H100": 80.0, "A100": 40.0, "L40S": 48.0, "L4": 24.0, "A10G": 24.0, "V100": 16.0,
                  "T4": 16.0}  # Ray's accelerator_type -> memory of one GPU (the smaller size where two exist)
DEFAULT_GPU_MEMORY_GIB = 16.0
MAX_TRIAL_RETRIES = 3  # Tune restarts a trial whose worker or node died from its last checkpoint, this many times


def failure_config() -> tune.FailureConfig:
    """Retry a trial that errored (its worker process or node died) from its last checkpoint, up to
    MAX_TRIAL_RETRIES times (the writer counts them in trials.retries). A non-finite loss or an out-of-memory
    error at the batch-size floor is reported by the trainable, not raised, so it is never retried."""
    return tune.FailureConfig(max_failures=MAX_TRIAL_RETRIES)


def experiment_name(sweep_id: int, sweep_name: str, first_idx: int = 0) -> str:
    """Unique per sweep and launch, even across databases sharing one storage path (ids restart in a new
    database): `sweep-<id>-<name>` for the first launch, `...-ext<first idx>` for an extension."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", sweep_name)[:80]
    return f"sweep-{sweep_id}-{safe}" + (f"-ext{first_idx}" if first_idx else "")


def gpu_memory_gib(cluster: dict[str, float], given: float | None = None) -> float:
    """Memory of one GPU: `given` (the run context's), else from Ray's accelerator type, else a conservative 16."""
    if given is not None:
        return float(given)
    types = [k.removeprefix("accelerator_type:") for k in cluster if k.startswith("accelerator_type:")]
    known = [GPU_MEMORY_GIB[t] for t in types if t in GPU_MEMORY_GIB]
    return min(known) if known else DEFAULT_GPU_MEMORY_GIB


def trial_resources(cfg: TrialConfig, params: int, *, cluster_gpus: float, gpu_gib: float,
                    data_root: str | None = None) -> dict[str, float]:
    """Ray resources of one trial from its predicted memory (search_spaces.placement); an image-folder dataset is
    sized from its tree under `data_root`."""
    info = data_sizes(cfg.dataset, data_root)
    act = act_elems_per_image(cfg.model, cfg.depths, cfg.widths, num_classes=info.num_classes,
                              channels=info.channels, image_size=info.image_size)
    images = (cfg.n_train or info.n_train) + cfg.val_size + (cfg.n_test or info.n_test)
    mem = predict_memory_gib(params=params, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
                             act_elems_per_image=act, method=cfg.method, images_on_device=images,
                             channels=info.channels, image_size=info.image_size, bf16=cfg.precision != "fp32")
    return place(mem, cluster_gpus=cluster_gpus, gpu_memory_gib=gpu_gib).as_ray()


def _trial_pgf(config: dict[str, Any]) -> PlacementGroupFactory:
    return PlacementGroupFactory([config["trial"].get("resources") or {"CPU": 1}])


def _trial_name(trial: Any) -> str:
    """Tune's name of a trial (its directory, Tune's tables, the dashboard's Train/Tune views): `trial-<id>-<arch>`,
    e.g. trial-12-wrn-d1-1-1-w2-2-2. The trial actors themselves show Tune's class and the function's name (a
    reused actor runs several trials, so the actor cannot carry one trial's name)."""
    t = trial.config["trial"]
    c = t["config"]
    return f"trial-{t['trial_id']}-{arch_key(c['model'], tuple(c['depths']), tuple(c['widths']))}"


def _trial_dirname(trial: Any) -> str:  # `trial-<id>`: workers.init_from and posthoc find checkpoints by it
    return f"trial-{trial.config['trial']['trial_id']}"


def _candidates(spec: SweepSpec, *, cluster_gpus: float, gpu_gib: float, data_root: str | None = None
                ) -> list[Candidate]:
    from search_spaces.plan import make_plan  # counts every configuration of the grid

    out = []
    for p in make_plan(spec, max_trials=sys.maxsize, data_root=data_root).trials:
        res = trial_resources(p.config, p.params, cluster_gpus=cluster_gpus, gpu_gib=gpu_gib, data_root=data_root)
        out.append(Candidate(row=p.stored_row(), known={"params": p.params, "macs": p.macs},
                             est_seconds=p.est_seconds, resources=res))
    return out


def build_tuner(sweep_id: int, context: RunContext, *, first_idx: int = 0, end_idx: int | None = None
                ) -> tune.Tuner | None:
    """The Tuner of one launch (trials with first_idx <= idx < end_idx); `Tuner.restore` when its experiment
    exists (unfinished trials continue from their last checkpoint; errored ones stay failed); None when a fresh
    grid launch has nothing left to run."""
    database_url, storage_path, data_root = context.database_url, context.storage_path, context.data_root
    make_session = session_factory(make_engine(database_url))
    with make_session() as s:
        sweep = get_sweep(s, sweep_id=sweep_id)
        if sweep is None:
            raise SystemExit(f"sweep {sweep_id} does not exist in the run context's database")
        stored = StoredSweep.model_validate(sweep.spec)
        name, spec = experiment_name(sweep_id, sweep.name, first_idx), stored.spec
        trials = [t for t in list_trials(s, sweep_id=sweep_id)
                  if t.idx >= first_idx and (end_idx is None or t.idx < end_idx)]
    search = spec.search
    if not stored.is_search and all(t.status in NOT_TO_START for t in trials):
        return None  # a finished grid launch (the submission's trials when an extension runs): leave it alone
    skip = frozenset(t.id for t in trials if t.status in FINISHED)
    trainable = tune.with_resources(tune.with_parameters(run_trial, skip=skip), _trial_pgf)
    path = str(Path(storage_path) / name)
    if tune.Tuner.can_restore(path):
        log.info("restoring experiment %s (%d finished trials skipped)", path, len(skip))
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False)

    cluster = ray.cluster_resources()
    gpus, gpu_gib = float(cluster.get("GPU", 0.0)), gpu_memory_gib(cluster, context.gpu_memory_gib)
    if search is not None and stored.is_search:
        candidates = _candidates(spec, cluster_gpus=gpus, gpu_gib=gpu_gib, data_root=data_root)
        epochs = [int(c.row["config"]["epochs"]) for c in candidates]
        search_alg: Any = make_search_alg(search, candidates, database_url=database_url, sweep_id=sweep_id,
                                          data_root=data_root)
        param_space: dict[str, Any] = {}
        num_samples = -1  # until the searcher says FINISHED (budget reached or every candidate taken)
    else:
        todo = [t for t in trials if t.status not in NOT_TO_START]
        if not todo:
            return None
        configs = {t.id: TrialConfig.model_validate(t.config) for t in todo}
        epochs = [c.epochs for c in configs.values()]
        spaces = [{"trial_id": t.id, "config": _with_init_from(t.config, storage_path), "data_root": data_root,
                   "known": {"params": t.params, "macs": t.macs},
                   "resources": trial_resources(configs[t.id], t.params, cluster_gpus=gpus, gpu_gib=gpu_gib,
                                                data_root=data_root)}
                  for t in todo]
        search_alg, param_space, num_samples = None, {"trial": tune.grid_search(spaces)}, 1
    if search is not None:
        check_epochs(search, epochs)
    scheduler = make_scheduler(search, max(epochs))
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(num_samples=num_samples, search_alg=search_alg, scheduler=scheduler,
                                    reuse_actors=True, trial_name_creator=_trial_name,
                                    trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=[DBWriter(database_url, sweep_id, scheduler=scheduler)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=failure_config(),
            verbose=0,
        ),
    )


def wind_down(make_session: sessionmaker[Session], sweep_id: int, *, last_idx: int | None) -> str:
    """The safety net after the last launch: no trial of this driver (idx <= last_idx; all when None) stays queued
    or running silently. A cancelled sweep's trials end cancelled, any other's failed. Trials added after this
    driver started (an extension, which has its own driver) are left alone. Returns the sweep's status."""
    with make_session.begin() as s:
        sweep = get_sweep(s, sweep_id=sweep_id)
        if sweep is not None and sweep.status in ("cancelling", "cancelled"):
            end_unfinished_trials(s, sweep_id=sweep_id, status="cancelled", error="cancelled", max_idx=last_idx,
                                  actor="driver")
        else:
            end_unfinished_trials(s, sweep_id=sweep_id, status="failed", max_idx=last_idx, actor="driver",
                                  error=DRIVER_ENDED)
        return refresh_sweep_status(s, sweep_id=sweep_id, actor="driver")


def run(sweep_id: int, context: RunContext) -> int:
    """Run every launch of the sweep with work left, then wind down. Joins the Ray cluster this job runs on
    (`address="auto"`) unless Ray is already initialised in this process."""
    if not ray.is_initialized():
        ray.init(address="auto", log_to_driver=False)
    make_session = session_factory(make_engine(context.database_url))
    with make_session.begin() as s:
        sweep = set_sweep_status(s, sweep_id=sweep_id, status="running", actor="driver")
        stored = StoredSweep.model_validate(sweep.spec)
        # The trials this driver answers for: a grid sweep's rows as they are now (an extension may add rows, and
        # launch its own driver, while this one winds down); a search sweep's rows are added by this driver.
        last_idx = None if stored.is_search else max_trial_idx(s, sweep_id=sweep_id)
    for first, end in stored.launch_ranges():
        tuner = build_tuner(sweep_id, context, first_idx=first, end_idx=end)
        if tuner is not None:
            tuner.fit()
    status = wind_down(make_session, sweep_id, last_idx=last_idx)
    if status == "completed":  # eval preset `standard`: AutoAttack on the widened front (nothing for the others)
        from workers.posthoc import evaluate_front_after_sweep

        evaluate_front_after_sweep(sweep_id, context, preset=stored.spec.eval)
    log.info("sweep %d finished: %s", sweep_id, status)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.driver", description=__doc__)
    parser.add_argument("sweep_id", type=int)
    parser.add_argument("--context", type=Path, required=True,
                        help="the run context JSON the launcher wrote (database URL, storage path, data root)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run(args.sweep_id, load_context(args.context))


def load_context(path: Path) -> RunContext:
    """The run context file; a missing or malformed one ends the driver with one line naming the file and field."""
    try:
        return RunContext.read(path)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    except ValidationError as e:
        err = e.errors()[0]
        raise SystemExit(f"context: {path}: {'.'.join(str(p) for p in err['loc']) or 'json'}: {err['msg']}") from None


def _with_init_from(config: dict[str, Any], storage_path: str) -> dict[str, Any]:
    """A fine-tuning trial's `init_from = "trial:<id>"` resolved to the state file under this run's storage path
    (the trainer then needs no storage path); any other config unchanged. The stored config keeps the reference."""
    ref = config.get("init_from")
    if not (isinstance(ref, str) and ref.startswith("trial:")):
        return config
    from workers.init_from import resolve_init_from

    try:
        return {**config, "init_from": str(resolve_init_from(ref, storage_path=storage_path))}
    except (FileNotFoundError, ValueError) as e:  # the trial fails on its own (the trainer cannot resolve it either)
        log.warning("%s", e)
        return config


if __name__ == "__main__":
    sys.exit(main())
