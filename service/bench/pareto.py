"""Benchmark: a Pareto query (params min, robust accuracy max; best checkpoint, pgd20) over 100,000 stored final
results on SQLite, through service.analysis.pareto_report (what GET /api/v1/pareto runs). Not a test.

    python -m service.bench.pareto [--rows 100000] [--db /tmp/pareto-bench.db | --url URL] [--repeat 7]

Builds the sweep `pareto-bench-<rows>` once (bulk inserts; reused when the store holds it) and prints the median
and best wall time of the query, the front size and the verdict on noise. `--url` takes any database URL (e.g. a
PostgreSQL database for the cluster setting); the benchmark only ever adds its own sweep there.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from sqlalchemy import insert, select

from db.engine import make_engine, session_factory, upgrade
from db.models import FinalResult, Sweep, Trial
from service.analysis import pareto_report


def build(url: str, n: int, seed: int = 0) -> None:
    """The sweep `pareto-bench-<n>`: n trials, each with one best-checkpoint pgd20 row (counts of 10,000 images)."""
    rng = random.Random(seed)
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        sweep = Sweep(name=f"pareto-bench-{n}", spec={}, status="completed", code_version="bench", n_trials=n)
        s.add(sweep)
        s.flush()
        trials = []
        for i in range(n):
            params = rng.randint(10_000, 50_000_000)
            trials.append({"sweep_id": sweep.id, "idx": i, "config": {}, "config_hash": f"h{i}",
                           "arch": f"wrn-{i}", "depths": "5-5-5", "widths": "1-1-1", "params": params,
                           "macs": 100 * params, "method": "sat", "lam": 1.0, "eps": 8 / 255, "norm": "linf",
                           "dataset": "cifar10", "n_train": None, "seed": 0, "status": "completed",
                           "code_version": "bench"})
        s.execute(insert(Trial), trials)
        stored = s.execute(select(Trial.id, Trial.sweep_id, Trial.params, Trial.macs)
                           .where(Trial.sweep_id == sweep.id).order_by(Trial.idx)).all()
        finals = []
        for trial in stored:
            n_robust, n_correct = rng.randint(1000, 6000), rng.randint(6000, 9000)
            finals.append({"trial_id": trial.id, **FinalResult.copied_from(trial), "checkpoint": "best",
                           "attack": "pgd20", "epoch": 10,
                           "clean_acc": n_correct / 10_000, "robust_acc": n_robust / 10_000, "stability": 0.6,
                           "n_total": 10_000, "n_correct": n_correct, "n_stable": 6000, "n_robust": n_robust})
        s.execute(insert(FinalResult), finals)
    if engine.dialect.name == "postgresql":  # what autovacuum does within a minute of a bulk load: plan on statistics
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE final_results")
    engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--db", type=Path, default=Path("/tmp/pareto-bench.db"))
    ap.add_argument("--url", help="a database URL instead of the SQLite file --db")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    url = args.url or f"sqlite:///{args.db.resolve()}"
    name = f"pareto-bench-{args.rows}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine)() as s:
        have = s.scalar(select(Sweep.id).where(Sweep.name == name)) is not None
    if not have:
        t0 = time.perf_counter()
        build(url, args.rows)
        print(f"built {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
    sessions = session_factory(engine)
    times, report = [], None
    for _ in range(args.repeat):
        with sessions() as s:
            t0 = time.perf_counter()
            report = pareto_report(s, metrics=["params", "robust_acc"], maximize=None, filters={"sweep": name})
            times.append(time.perf_counter() - t0)
    assert report is not None
    print(f"pareto over {report.n_rows:,} rows: median {1000 * statistics.median(times):.1f} ms, best "
          f"{1000 * min(times):.1f} ms ({args.repeat} runs); front {len(report.front)} points, within noise: "
          f"{report.front_within_noise}")


if __name__ == "__main__":
    main()
