"""Benchmark: trial-epochs that ASHA, NSGA-II and TPE need to recover a full grid's top-5 and Pareto front.

    .venv/bin/python -m service.bench.search grid   --workdir .data/bench-search   # run the full grid (Ray Tune)
    .venv/bin/python -m service.bench.search replay --workdir .data/bench-search   # replay the searches on it
    .venv/bin/python -m service.bench.search real   --workdir .data/bench-search   # one real ASHA and NSGA-II run

`grid` runs the proxy grid through the real driver (Ray Tune, in-process local Ray) and records every epoch.
`replay` then runs (workers.bench.search_replay) the project's own ASHA scheduler (workers.tune_search.RungStopper) and Optuna searcher
(CandidateSearcher driving an Optuna study with NSGAIISampler / TPESampler by ask/tell) against that table, many times over
(trial arrival orders for ASHA, sampler seeds for NSGA-II and TPE), answering each trial with what the grid
measured for it (a tabular benchmark: training is seeded, so a re-run of a configuration reproduces its row).
`real` runs ASHA and NSGA-II once each through the driver on the same task, to check the replay against reality.

Ground truth, as the service reports it: the test-set PGD robust accuracy of each trial's best checkpoint and its
parameter count. The searchers see what they see in production: validation robust accuracy (per epoch for ASHA,
the best checkpoint's for NSGA-II and TPE). Recovery: ASHA recovers the top-5 when all five ran to completion (it
trains every configuration at least to its first rung); a sampler recovers a set when it has evaluated all of its
members. Trial-epochs: epochs trained, summed over trials (the grid: trials x epochs).

Sweeps are stored through the service (service.submission.store_sweep) and run by the driver in-process with an
explicit run context; the torch and Ray side is imported lazily from workers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PROXY: dict[str, Any] = {  # 12 configurations: stage-3 depth x uniform width scale, SAT at 16/255 on synthetic data
    "name": "bench-grid",
    "depths": [[1], [1], [1, 2, 3]],
    "widths": [[1], [1], [1]],
    "gamma": [0.25, 0.5, 0.75, 1.0],
    "eps": [16 / 255],
    "dataset": "synthetic",
    "n_train": [512],
    "training": {"epochs": 6, "batch_size": 64, "val_size": 512, "n_test": 512, "lr": 0.05,
                 "train_attack": {"steps": 2, "step_size": 0.04}, "eval_attack": {"steps": 4, "step_size": 0.02}},
}
PARETO = [{"metric": "params", "mode": "min"}, {"metric": "robust_acc", "mode": "max"}]
TOP_K = 5


# ----------------------------------------------------------------------------------------------------- running


def _settings(workdir: Path, name: str) -> Any:
    from service.settings import Settings

    return Settings(database_url=f"sqlite:///{workdir / (name + '.db')}", storage_path=str(workdir / "ray_results"))


def _run_sweep(workdir: Path, spec: dict[str, Any], name: str) -> tuple[Any, int, float]:
    """Store `spec` and run it with the real driver on a private local Ray; (settings, sweep id, wall seconds)."""
    from db.engine import make_engine, session_factory, upgrade
    from search_spaces.run_context import RunContext
    from search_spaces.spec import SweepSpec
    from service.schemas import SweepRequest
    from service.submission import store_sweep
    from workers.bench.search_replay import start_local_ray
    from workers.driver import run

    settings = _settings(workdir, name)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with session_factory(engine)() as s:
        sweep_id = store_sweep(s, SweepRequest(spec=SweepSpec(**(spec | {"name": name}))), settings)[0].id
    start_local_ray(num_cpus=2)
    t0 = time.monotonic()
    run(sweep_id, RunContext(database_url=settings.database_url, storage_path=settings.storage_path))
    return settings, sweep_id, time.monotonic() - t0


def table(settings: Any, sweep_id: int) -> list[dict[str, Any]]:
    """One row per trial: config hash, params, status, per-epoch validation robust accuracy and seconds, the best
    checkpoint's validation robust accuracy (the trainable's final `robust_acc`) and its test PGD robust accuracy."""
    from db.contract import DEFAULT_ATTACK
    from db.engine import make_engine, session_factory
    from db.results import query_results
    from db.sweeps import list_trials
    from search_spaces.config import TrialConfig

    rows = []
    with session_factory(make_engine(settings.database_url))() as s:
        best = {"sweep": sweep_id, "checkpoint": "best", "attack": DEFAULT_ATTACK}
        final = {r["trial"]: r["robust_acc"] for r in query_results(s, filters=best)}
        for t in list_trials(s, sweep_id=sweep_id):
            cfg = TrialConfig.model_validate(t.config)
            val = [m.robust_acc for m in t.epoch_metrics]
            eligible = [(v, e) for e, v in enumerate(val, 1) if e > cfg.best_from * cfg.epochs - 1e-9]
            rows.append({"trial": t.id, "hash": t.config_hash, "arch": t.arch, "params": t.params, "status": t.status,
                         "epochs_run": len(val), "val": val, "seconds": [m.device_seconds for m in t.epoch_metrics],
                         "best_val": max(eligible)[0] if eligible and len(val) == cfg.epochs else None,
                         "test": final.get(t.id)})
    return rows


# ------------------------------------------------------------------------------------------------ ground truth


def top_k(rows: list[dict[str, Any]], k: int = TOP_K) -> set[str]:
    done = sorted((r for r in rows if r["test"] is not None), key=lambda r: (-r["test"], r["params"]))
    return {r["hash"] for r in done[:k]}


def front(rows: list[dict[str, Any]]) -> set[str]:
    """Configurations no other one beats on (params lower-or-equal, test robust accuracy higher-or-equal)."""
    from db.pareto import pareto_mask

    done = [r for r in rows if r["test"] is not None]
    mask = pareto_mask(np.array([[r["params"], r["test"]] for r in done]), [False, True])
    return {r["hash"] for r, on in zip(done, mask, strict=True) if on}


# ------------------------------------------------------------------------------------------------------ replays


def replay_sampler(grid: list[dict[str, Any]], spec: dict[str, Any], *, workdir: Path) -> list[str]:
    """Store `spec` (a search) in a scratch database through the service and replay its searcher on the grid
    (workers.bench.search_replay.replay_sampler)."""
    from db.engine import make_engine, session_factory, upgrade
    from search_spaces.spec import SweepSpec
    from service.schemas import SweepRequest
    from service.submission import store_sweep
    from workers.bench.search_replay import replay_sampler as replay

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        settings = _settings(Path(tmp), "replay")
        engine = make_engine(settings.database_url)
        upgrade(engine)
        with session_factory(engine)() as s:
            sweep_id = store_sweep(s, SweepRequest(spec=SweepSpec(**spec)), settings)[0].id
        order = replay(grid, SweepSpec(**spec), database_url=settings.database_url, sweep_id=sweep_id)
        engine.dispose()
    return order


def rank_signal(rows: list[dict[str, Any]], epochs: int) -> dict[str, float]:
    """Spearman correlation with the final test robust accuracy of what the searchers see: the validation robust
    accuracy at each epoch (ASHA's rungs) and of the best checkpoint (NSGA-II's and TPE's objective)."""
    from scipy.stats import spearmanr

    done = [r for r in rows if r["test"] is not None]
    test = [r["test"] for r in done]
    out = {f"val_epoch{e}": round(float(spearmanr([r["val"][e - 1] for r in done], test)[0]), 3)
           for e in range(1, epochs + 1)}
    out["val_best_checkpoint"] = round(float(spearmanr([r["best_val"] for r in done], test)[0]), 3)
    return out


def covered_after(order: list[str], target: set[str]) -> int:
    """How many trials of `order` it takes until every member of `target` has been evaluated."""
    return max(order.index(h) for h in target) + 1


def _summary(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "mean": round(statistics.fmean(xs), 2), "min": min(xs), "max": max(xs)}


def replay(workdir: Path, seeds: int) -> dict[str, Any]:
    grid = json.loads((workdir / "grid.json").read_text())
    rows, spec = grid["rows"], grid.get("spec", PROXY)
    epochs = spec["training"]["epochs"]
    truth_top, truth_front = top_k(rows), front(rows)
    n = len(rows)
    out: dict[str, Any] = {"n_configs": n, "epochs": epochs, "grid_trial_epochs": n * epochs,
                           "top5": sorted(truth_top), "front": sorted(truth_front), "methods": {}}
    out["spearman_vs_test"] = rank_signal(rows, epochs)
    best = top_k(rows, 1)
    from workers.bench.search_replay import replay_asha

    rng = np.random.default_rng(0)
    for rf in (2.0, 3.0):
        runs = [replay_asha(rows, list(rng.permutation(n)), epochs=epochs, grace=1, rf=rf) for _ in range(seeds)]
        out["methods"][f"asha_rf{rf:g}"] = {
            "trial_epochs": _summary([r["trial_epochs"] for r in runs]),
            "top1_recovered_fraction": sum(best <= r["completed"] for r in runs) / seeds,
            "top5_recovered_fraction": sum(truth_top <= r["completed"] for r in runs) / seeds,
            "top5_members_found": _summary([len(truth_top & r["completed"]) for r in runs]),
            "front_recovered_fraction": sum(truth_front <= r["completed"] for r in runs) / seeds,
            "front_members_found": _summary([len(truth_front & r["completed"]) for r in runs]),
        }
    base = {k: v for k, v in spec.items() if k != "name"}
    for name, search, target in (
        ("nsga2", {"algorithm": "nsga2", "objectives": PARETO, "population_size": 4}, truth_front),
        ("nsga2_for_top5", {"algorithm": "nsga2", "objectives": PARETO, "population_size": 4}, truth_top),
        ("tpe", {"algorithm": "tpe", "objectives": PARETO[1:], "n_startup_trials": 4}, truth_top),
    ):
        needed, first = [], []
        for seed in range(seeds):
            order = replay_sampler(rows, base | {"search": search | {"seed": seed}}, workdir=workdir)
            assert len(order) == n and len(set(order)) == n, "the searcher must cover the grid without repeats"
            needed.append(covered_after(order, target))
            first.append(covered_after(order, best))
        out["methods"][name] = {"trials_needed": _summary(needed), "trial_epochs": _summary([k * epochs for k in needed]),
                                "trials_to_top1": _summary(first)}
    # a uniformly random order needs (n + 1) * m / (m + 1) trials in expectation to cover m given configurations
    out["random_expected_trials"] = {"front": (n + 1) * len(truth_front) / (len(truth_front) + 1),
                                     "top5": (n + 1) * TOP_K / (TOP_K + 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m service.bench.search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("grid", "replay", "real"))
    p.add_argument("--workdir", type=Path, default=Path(".data/bench-search"))
    p.add_argument("--seeds", type=int, default=20)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.workdir = args.workdir.resolve()
    if args.step == "grid":
        settings, sweep_id, wall = _run_sweep(args.workdir, PROXY, "bench-grid")
        rows = table(settings, sweep_id)
        (args.workdir / "grid.json").write_text(json.dumps({"spec": PROXY, "wall_s": wall, "rows": rows}, indent=1))
        print(json.dumps({"wall_s": round(wall, 1), "top5": sorted(top_k(rows)), "front": sorted(front(rows))}))
        for r in rows:
            print(r["arch"], r["params"], r["status"], [round(v, 3) for v in r["val"]], r["best_val"], r["test"])
    elif args.step == "replay":
        out = replay(args.workdir, args.seeds)
        (args.workdir / "replay.json").write_text(json.dumps(out, indent=1))
        print(json.dumps(out, indent=1))
    else:
        grid = json.loads((args.workdir / "grid.json").read_text())["rows"]
        report = {}
        for name, search in (("asha", {"scheduler": "asha", "asha": {"grace_period": 1, "reduction_factor": 2}}),
                             ("nsga2", {"algorithm": "nsga2", "objectives": PARETO, "population_size": 4,
                                        "budget_trials": 8, "max_concurrent": 2})):
            settings, sweep_id, wall = _run_sweep(args.workdir, PROXY | {"search": search}, f"bench-{name}")
            rows = table(settings, sweep_id)
            ran = {r["hash"] for r in rows if r["status"] == "completed"}
            report[name] = {"wall_s": round(wall, 1), "trials": len(rows), "trial_epochs": sum(r["epochs_run"] for r in rows),
                            "stopped": sum(r["status"] == "stopped" for r in rows),
                            "top5_found": len(top_k(grid) & ran), "front_found": len(front(grid) & ran)}
        (args.workdir / "real.json").write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
