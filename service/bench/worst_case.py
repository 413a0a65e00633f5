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

import httpx
from sqlalchemy import insert, select

from db.engine import make_engine, session_factory, upgrade
from db.models import EpochMetric, FinalResult, Sweep, Trial
from search_spaces.config import MAX_EPOCHS, MAX_STAGE_DEPTH
from service.auth import issue_token

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


def build_import_rows(n: int) -> list[dict[str, Any]]:
    """n distinct final rows for POST /sweeps/import (just under 1 MB, the body limit, at n = 4,000)."""
    return [{"arch": "wrn-d5-5-5-w10-10-10", "method": "trades", "lam": 6.0, "eps": 8 / 255, "norm": "linf",
             "dataset": "cifar10", "seed": i, "checkpoint": "best", "attack": "pgd20", "clean_acc": 0.8,
             "robust_acc": round(0.4 + (i % 1000) / 10_000, 4), "n_total": 10_000} for i in range(n)]


def grid_spec(max_trials: int) -> dict[str, Any]:
    """max_trials configurations (10 x 10 x max_trials/100 depths) at up to MAX_STAGE_DEPTH blocks per stage."""
    third = max_trials // 100
    return {"depths": [list(range(MAX_STAGE_DEPTH - 9, MAX_STAGE_DEPTH + 1)),
                       list(range(MAX_STAGE_DEPTH - 9, MAX_STAGE_DEPTH + 1)),
                       list(range(MAX_STAGE_DEPTH - third + 1, MAX_STAGE_DEPTH + 1))],
            "widths": [[10], [10], [10]], "dataset": "synthetic", "n_train": [64],
            "training": {"epochs": 1, "batch_size": 32, "val_size": 32, "n_test": 32}}


@dataclass
class Case:
    route: str  # as the table shows it
    worst: str  # the worst input, in words
    call: Callable[[httpx.Client], httpx.Response]
    repeat: bool = True  # False: a write that changes the store (timed once)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(workdir: Path, url: str) -> tuple[subprocess.Popen[bytes], str]:
    """`robustgrid serve` (python -m service.cli serve) on `url`, Ray at a closed port; returns it and its root URL."""
    port = free_port()
    env = {**os.environ, "ROBUSTGRID_DATABASE_URL": url, "ROBUSTGRID_STORAGE_PATH": str(workdir / "ray"),
           "ROBUSTGRID_RAY_ADDRESS": f"127.0.0.1:{free_port()}", "ROBUSTGRID_PUBLISHED_DIR": str(workdir / "none")}
    log = open(workdir / "serve.log", "ab")  # noqa: SIM115 - the server's output, closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)], cwd=workdir,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{root}/api/v1/health", timeout=1).status_code == 200:
                return proc, root
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"serve did not start; see {workdir / 'serve.log'}")


def cases(ids: dict[str, int], max_trials: int) -> list[Case]:
    big, small, long_trial = ids["big"], ids["small"], ids["long_trial"]
    big_n, small_n = ids["big_n"], ids["small_n"]
    grid = {"spec": grid_spec(max_trials)}
    refs = [("reference", str(big))] * 5
    api = "/api/v1"
    return [
        Case("GET /api/v1/health", "-", lambda c: c.get(f"{api}/health")),
        Case("GET /api/v1/presets", "-", lambda c: c.get(f"{api}/presets")),
        Case("POST /api/v1/plan", f"{max_trials:,} configurations (max_trials) at 991-1,000 blocks per stage",
             lambda c: c.post(f"{api}/plan", json=grid)),
        Case("POST /api/v1/plan", "depths [[200000000],[1],[1]] (refused: 422)",
             lambda c: c.post(f"{api}/plan", json={"spec": {"depths": [[200_000_000], [1], [1]]}})),
        Case("POST /api/v1/sweeps", f"a second {max_trials:,}-trial grid, stored; Ray at a closed port",
             lambda c: c.post(f"{api}/sweeps", json=grid), repeat=False),
        Case("GET /api/v1/sweeps", "every sweep of the store", lambda c: c.get(f"{api}/sweeps")),
        Case("GET /api/v1/sweeps/{id}", f"{big_n:,} trials", lambda c: c.get(f"{api}/sweeps/{big}")),
        Case("GET /api/v1/sweeps/{id}/trials", f"{big_n:,} trials, limit=10000",
             lambda c: c.get(f"{api}/sweeps/{big}/trials", params={"limit": 10_000})),
        Case("GET /api/v1/results", f"{big_n:,} identical rows, limit=10000",
             lambda c: c.get(f"{api}/results", params={"sweep": big, "limit": 10_000})),
        Case("GET /api/v1/results (csv)", f"{big_n:,} identical rows, limit=10000, format=csv",
             lambda c: c.get(f"{api}/results", params={"sweep": big, "limit": 10_000, "format": "csv"})),
        Case("GET /api/v1/results (aggregate)", f"{big_n:,} identical rows, aggregate=seeds",
             lambda c: c.get(f"{api}/results", params={"sweep": big, "aggregate": "seeds"})),
        Case("GET /api/v1/pareto", f"{small_n:,} identical rows", lambda c: c.get(f"{api}/pareto",
                                                                                  params={"sweep": small})),
        Case("GET /api/v1/pareto", f"{big_n:,} identical rows", lambda c: c.get(f"{api}/pareto",
                                                                                params={"sweep": big})),
        Case("GET /api/v1/pareto", f"{big_n:,} identical rows, metrics clean_acc, robust_acc",
             lambda c: c.get(f"{api}/pareto", params={"sweep": big, "x": "clean_acc"})),
        Case("GET /api/v1/trials/{id}/curves", f"{MAX_EPOCHS:,} epochs (MAX_EPOCHS)",
             lambda c: c.get(f"{api}/trials/{long_trial}/curves")),
        Case("GET /api/v1/sweeps/{id}/epsilon-star", f"{big_n:,} rows (one radius: 422)",
             lambda c: c.get(f"{api}/sweeps/{big}/epsilon-star")),
        Case("POST /api/v1/sweeps/import", "4,000 rows (~0.9 MB; the body limit is 1 MB)",
             lambda c: c.post(f"{api}/sweeps/import", json={"name": f"import-{time.time_ns()}",
                                                             "rows": build_import_rows(4_000)}), repeat=False),
        Case("POST /api/v1/sweeps/{id}/evaluate", f"the {big_n:,}-row reference (refused)",
             lambda c: c.post(f"{api}/sweeps/{big}/evaluate", json={})),
        Case("POST /api/v1/sweeps/{id}/resume", f"the {max_trials:,}-trial grid; Ray at a closed port",
             lambda c: c.post(f"{api}/sweeps/{ids['grid']}/resume"), repeat=False),
        Case("POST /api/v1/sweeps/{id}/extend", f"the {max_trials:,}-trial grid, seeds [0, 1] (over max_trials)",
             lambda c: c.post(f"{api}/sweeps/{ids['grid']}/extend", json={"patch": {"seeds": [0, 1]}})),
        Case("POST /api/v1/sweeps/{id}/cancel", f"the {max_trials:,}-trial grid",
             lambda c: c.post(f"{api}/sweeps/{ids['grid']}/cancel"), repeat=False),
        *[Case(f"GET /api/v1/sweeps/{{id}}/plots/{kind}.png", f"{big_n:,} identical rows",
               lambda c, kind=kind: c.get(f"{api}/sweeps/{big}/plots/{kind}.png"))
          for kind in ("pareto", "depth-heatmap", "eps", "lambda-width")],
        Case("GET /api/v1/sweeps/{id}/plots/pareto.svg", f"{big_n:,} identical rows and 5 references of as many",
             lambda c: c.get(f"{api}/sweeps/{big}/plots/pareto.svg", params=refs)),
        Case("GET /api/v1/trials/{id}/plots/curves.png", f"{MAX_EPOCHS:,} epochs",
             lambda c: c.get(f"{api}/trials/{long_trial}/plots/curves.png")),
        Case("GET /", "every sweep of the store", lambda c: c.get("/")),
        Case("GET /sweeps/{id}", f"{small_n:,} identical rows", lambda c: c.get(f"/sweeps/{small}")),
        Case("GET /sweeps/{id}", f"{big_n:,} identical rows, sort=-robust_acc, limit=1000, offset=99000",
             lambda c: c.get(f"/sweeps/{big}", params={"sort": "robust_acc", "desc": 1, "limit": 1000,
                                                       "offset": big_n - 1000})),
        Case("GET /compare", f"{big_n:,} rows and 5 references", lambda c: c.get("/compare",
                                                                                params=[("run", big), *refs])),
        Case("GET /docs", "-", lambda c: c.get("/docs")),
        Case("GET /openapi.json", "-", lambda c: c.get("/openapi.json")),
        Case("GET /login", "-", lambda c: c.get("/login")),
    ]


def run(workdir: Path, rows: int, repeat: int, only: str | None) -> list[tuple[str, str, int, float, int]]:
    """(route, worst input, status, median seconds, response bytes) per case, against a fresh store."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "rg.db"
    for p in workdir.glob("rg.db*"):
        p.unlink()
    url = f"sqlite:///{db}"
    small_n = min(6_500, rows)
    ids = {"small": build_identical(url, small_n, name="small"), "big": build_identical(url, rows, name="big"),
           "small_n": small_n,
           "big_n": rows, "long_trial": build_long_trial(url)}
    engine = make_engine(url)
    with session_factory(engine).begin() as s:
        token = issue_token(s, scope="admin", owner="bench")[1]
    proc, root = serve(workdir, url)
    out = []
    try:
        with httpx.Client(base_url=root, timeout=600, headers={"Authorization": f"Bearer {token}"}) as client:
            max_trials = 2000
            client.post("/api/v1/sweeps", json={"spec": grid_spec(max_trials), "name": "grid"})
            ids["grid"] = next(s["id"] for s in client.get("/api/v1/sweeps").json() if s["name"] == "grid")
            for case in cases(ids, max_trials):
                if only and only not in case.route:
                    continue
                times, r = [], None
                for _ in range(repeat if case.repeat else 1):
                    t0 = time.perf_counter()
                    r = case.call(client)
                    times.append(time.perf_counter() - t0)
                assert r is not None
                out.append((case.route, case.worst, r.status_code, statistics.median(times), len(r.content)))
                print(f"{case.route:45} {r.status_code} {statistics.median(times):8.3f} s  {len(r.content):>11,} B"
                      f"  {case.worst}", flush=True)
    finally:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        print(f"SIGTERM -> exit: {time.monotonic() - t0:.1f} s")
        engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/rg-worst"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", help="time the routes whose name contains this")
    args = ap.parse_args()
    results = run(args.dir, args.rows, args.repeat, args.only)
    print("\n| route | worst-case input | status | median time | response |\n|---|---|---|---|---|")
    for route, worst, status, seconds, size in results:
        print(f"| `{route}` | {worst} | {status} | {seconds:.2f} s | {size:,} B |")


if __name__ == "__main__":
    main()
