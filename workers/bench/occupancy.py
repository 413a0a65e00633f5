"""B5: sweep occupancy through the real driver path.

A sweep of short trials is planned by search_spaces, stored in a temporary SQLite database with
db.sweeps.create_sweep, and run in-process by workers.driver.build_tuner(...).fit() on a local Ray runtime with
`cpus` CPUs (one trial per CPU). Busy time is each trial's own reported seconds (the `device_seconds` the DBWriter
stores: its training epochs plus its final evaluation); occupancy = sum(busy) / (fit wall time x slots), and the
fixed overhead per trial = (fit wall time x slots - sum(busy)) / trials. The overhead is split into the part
inside a trial's DB lifetime (started_at .. ended_at: process start, imports, data, model, checkpoints) and the
rest (scheduling gaps, Tune's start and end).
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC
from pathlib import Path
from typing import Any

from workers.bench.common import Row

TARGET = 0.9
TRAINING = {  # a short trial: WRN-10-1 (d1-1-1 w1), PGD-3 SAT on synthetic images, 2 epochs, PGD-5 evaluation
    "epochs": 2, "batch_size": 64, "val_size": 128, "n_test": 256, "lr": 0.05, "schedule": {"kind": "constant"},
    "train_attack": {"steps": 3, "step_size": 2 / 255}, "eval_attack": {"steps": 5, "step_size": None},
}


def sweep_spec(n_trials: int, n_train: int) -> Any:
    from search_spaces.spec import SweepSpec

    return SweepSpec(name=f"bench-occupancy-{time.time_ns()}", depths=[[1], [1], [1]], widths=[[1], [1], [1]],
                     dataset="synthetic", n_train=[n_train], seeds=list(range(n_trials)), training=TRAINING)


def store(database_url: str, spec: Any, storage_path: str) -> int:
    """Plan the spec and store the sweep and its trials (as service.submission does); returns the sweep id."""
    from db.engine import make_engine, session_factory, upgrade
    from db.sweeps import create_sweep
    from search_spaces.plan import make_plan
    from search_spaces.provenance import code_version
    from search_spaces.stored import StoredSweep

    upgrade(database_url)
    plan = make_plan(spec, max_trials=len(spec.seeds), storage_path=storage_path)
    rows = [t.stored_row() | {"idx": i} for i, t in enumerate(plan.trials)]
    with session_factory(make_engine(database_url)).begin() as s:
        sweep = create_sweep(s, name=spec.name, spec=StoredSweep(spec=spec).to_json(), trials=rows,
                             code_version=code_version())
        return sweep.id


def occupancy(*, n_trials: int = 16, n_train: int = 1024, cpus: int = 2, data_root: str | None = None) -> Row:
    import ray

    from db.engine import make_engine, session_factory
    from db.sweeps import list_trials
    from search_spaces.run_context import RunContext
    from workers.driver import build_tuner

    with tempfile.TemporaryDirectory(prefix="rg-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        sweep_id = store(url, sweep_spec(n_trials, n_train), tmp)
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            context = RunContext(database_url=url, storage_path=str(Path(tmp).resolve() / "ray"), data_root=data_root)
            tuner = build_tuner(sweep_id, context)
            t0, epoch0 = time.perf_counter(), time.time()
            if tuner is not None:
                tuner.fit()
            wall = time.perf_counter() - t0
        finally:
            if started_here:
                ray.shutdown()
        with session_factory(make_engine(url))() as s:
            trials = list_trials(s, sweep_id=sweep_id)
            done = [t for t in trials if t.status == "completed" and t.device_seconds is not None]
            busy = [float(t.device_seconds) for t in done]  # type: ignore[arg-type]
            lifetimes = [(t.ended_at - t.started_at).total_seconds() for t in done if t.started_at and t.ended_at]
            timeline = sorted((round(_epoch(t.started_at) - epoch0, 2), round(_epoch(t.ended_at) - epoch0, 2),
                               round(float(t.device_seconds), 2)) for t in done if t.started_at and t.ended_at)
    slots = min(cpus, n_trials)
    if len(done) < n_trials:
        return Row("B5", "sweep occupancy", None, TARGET, text=f"failed: {len(done)}/{n_trials} trials completed")
    occ = sum(busy) / (wall * slots)
    overhead = (wall * slots - sum(busy)) / n_trials
    inside = (sum(lifetimes) - sum(busy)) / max(len(lifetimes), 1)
    note = (f"{n_trials} trials on {slots} slots, busy {sum(busy) / n_trials:.1f} s/trial, wall {wall:.0f} s; "
            f"overhead {overhead:.1f} s/trial ({inside:.1f} inside the trial, {overhead - inside:.1f} between)")
    return Row("B5", "sweep occupancy", occ, TARGET, note=note,
               extra={"wall_s": wall, "busy_s": busy, "lifetime_s": lifetimes, "overhead_s_per_trial": overhead,
                      "overhead_inside_s_per_trial": inside, "slots": slots,
                      "timeline": timeline})


def _epoch(ts: Any) -> float:
    """A stored (UTC) timestamp as seconds since the epoch; SQLite returns it naive."""

    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
