"""`robustgrid bench`: the benchmark suite of workers.bench (B1-B6) in one command, one table."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import DataRootOpt, app, fail


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="small sizes: a smoke run in seconds (B5: 4 trials)")] = False,
    data_root: DataRootOpt = None,
    only: Annotated[str | None, typer.Option(help="comma-separated subset, e.g. B1,B2 (default: all)")] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda (default: cuda when available)")] = None,
    precision: Annotated[str, typer.Option(help="workers' precision for B1-B3: bf16 | auto | fp32")] = "bf16",
    threads: Annotated[int, typer.Option(help="torch CPU threads, fixed for the whole run")] = 1,
    seed: Annotated[int, typer.Option(help="B3: seed of the shared initial weights and batch order")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write rows and machine info here")] = None,
) -> None:
    """Run the benchmarks and print one table: value, target, floor, PASS/BELOW per benchmark. Real images when
    --data-root holds the cifar10-jpeg tree, synthetic ones otherwise."""
    import torch

    from workers.bench.common import render
    from workers.bench.suite import run_suite
    from workers.final_eval import pick_device

    if precision not in ("bf16", "auto", "fp32"):
        fail(f"precision: expected bf16, auto or fp32, got {precision!r}")
    if threads < 1:
        fail(f"threads: must be >= 1, got {threads}")
    if data_root is not None and not Path(data_root).exists():
        fail(f"data_root: {data_root!r} does not exist")
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)
    chosen = {s.strip().upper() for s in only.split(",") if s.strip()} if only else None
    dev = pick_device(device)
    try:
        rows, info = run_suite(device=dev, quick=quick, only=chosen, data_root=data_root, precision=precision,
                               seed=seed, on_row=lambda r: typer.echo(f"  {r.key}: {r.status}", err=True))
    except ValueError as e:
        fail(str(e))
        return
    typer.echo(f"device {info['device']} ({info.get('gpu', info['cpu'])}), {info['threads']} threads, torch "
               f"{info['torch']}, precision {precision}, data {info['data']}, seed {seed}{', quick' if quick else ''}")
    typer.echo(f"load average (1, 5, 15 min): {info['load_avg']} at start, {info['load_avg_end']} at end")
    typer.echo(render(rows))
    if json_out is not None:
        json_out.write_text(json.dumps({"machine": info, "rows": [
            {"key": r.key, "name": r.name, "value": r.value, "target": r.target, "floor": r.floor,
             "status": r.status, "text": r.text, "note": r.note, "extra": r.extra} for r in rows]}, indent=1))
