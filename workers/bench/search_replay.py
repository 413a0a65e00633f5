"""The workers' side of the search benchmark (service.bench.search): a private local Ray for in-process sweeps,
and replays of the project's ASHA scheduler and Optuna searcher against a measured grid (a tabular benchmark:
training is seeded, so a re-run of a configuration reproduces its row).
"""

from __future__ import annotations

import tempfile
from types import SimpleNamespace
from typing import Any


def start_local_ray(num_cpus: int = 2) -> None:
    """A private in-process Ray runtime (no dashboard) in its own temp dir, unless Ray is already initialised."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 _temp_dir=tempfile.mkdtemp(prefix="rgbench-"))


def replay_asha(grid: list[dict[str, Any]], order: list[int], *, epochs: int, grace: int, rf: float,
                workers: int = 2) -> dict[str, Any]:
    """Event simulation of `workers` parallel workers taking trials in `order`, epoch by epoch with the grid's
    measured epoch times; the project's RungStopper decides at every epoch."""
    from ray.tune.schedulers import TrialScheduler

    from workers.tune_search import RungStopper

    sched = RungStopper(epochs=epochs, grace_period=grace, reduction_factor=rf)
    queue, running, done, trained = list(order), [], set(), 0  # running: [time of next report, idx, epoch]
    clock = 0.0
    while queue or running:
        while queue and len(running) < workers:
            i = queue.pop(0)
            sched.on_trial_add(None, SimpleNamespace(trial_id=str(i)))
            running.append([clock + grid[i]["seconds"][0], i, 1])
        running.sort()
        clock, i, e = running.pop(0)
        trained += 1
        result = {"kind": "epoch", "epoch": e, "robust_acc": grid[i]["val"][e - 1]}
        if sched.on_trial_result(None, SimpleNamespace(trial_id=str(i)), result) == TrialScheduler.STOP:
            continue
        if e == epochs:
            done.add(grid[i]["hash"])
            continue
        running.append([clock + grid[i]["seconds"][e], i, e + 1])
    return {"trial_epochs": trained, "completed": done}


def replay_sampler(grid: list[dict[str, Any]], spec: Any, *, database_url: str, sweep_id: int,
                   concurrent: int = 2) -> list[str]:
    """The order in which the project's CandidateSearcher (Optuna inside) evaluates the grid's configurations when
    every trial is answered with the grid's measured values; all configurations are eventually taken. `spec`: the
    SweepSpec of the stored (search) sweep `sweep_id` at `database_url`, whose trial rows the searcher writes."""
    from ray.tune.search import Searcher

    from workers.driver import _candidates
    from workers.tune_search import CandidateSearcher

    by_hash = {r["hash"]: r for r in grid}
    searcher = CandidateSearcher(spec.search, _candidates(spec, cluster_gpus=0, gpu_gib=16.0),
                                 database_url=database_url, sweep_id=sweep_id, data_root=None)
    order, live = [], []
    for k in range(10 * len(grid)):
        cfg = searcher.suggest(f"t{k}")
        if cfg == Searcher.FINISHED:
            break
        if cfg is not None:
            h = next(c.row["config_hash"] for c in searcher.candidates if c.row["config"] == cfg["trial"]["config"])
            order.append(h)
            live.append((f"t{k}", h, cfg["trial"]["known"]))
        if len(live) >= concurrent or cfg is None:
            tid, h, known = live.pop(0)
            row = by_hash[h]
            searcher.on_trial_complete(tid, result={"kind": "final", "robust_acc": row["best_val"],
                                                    "trial_device_seconds": sum(row["seconds"]), **known})
    return order
