"""The whole suite: run the selected benchmarks on one device and return one row per benchmark, B1..B6.

    rows, info = run_suite(device=torch.device("cpu"), quick=True, only={"B1", "B2"})
    print(render(rows))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from workers.bench.common import GPU_ONLY, NO_GPU, Row, machine, sizes_for
from workers.bench.occupancy import occupancy
from workers.bench.sharing import sharing_gain
from workers.bench.speedup import speedup
from workers.bench.steps import attack_step_ratio, epoch_ratio, useful_flops

log = logging.getLogger(__name__)

ALL = ("B1", "B2", "B3", "B4", "B5", "B6")
NAMES = {"B1": "attack step / clean step", "B2": "PGD-10 epoch / clean epoch", "B3": "speedup over reference loop",
         "B4": "useful FLOP/s / bf16 matmul", "B5": "sweep occupancy", "B6": "GPU sharing gain, 4 trials"}


def run_suite(*, device: torch.device, quick: bool = False, only: set[str] | None = None, data_root: str | None = None,
              precision: str = "bf16", seed: int = 0, on_row: Callable[[Row], None] | None = None
              ) -> tuple[list[Row], dict[str, Any]]:
    """Rows B1..B6 (a benchmark left out by `only` gets a 'skipped' row) and the machine description.

    precision: the workers' precision for B1-B3 (`bf16` autocast with BN in fp32, the fast path; `auto`: bf16 on
    CUDA, fp32 on CPU; `fp32`). The reference loop of B3 is always fp32. seed: B3's initial weights and batch order
    (both loops share them)."""
    unknown = sorted((only or set()) - set(ALL))
    if unknown:
        raise ValueError(f"only: unknown benchmark(s) {unknown}; known: {', '.join(ALL)}")
    chosen = set(ALL) if not only else set(only)
    sz = sizes_for(device, quick)
    gpu = device.type == "cuda"
    info = machine(device) | {"device": str(device), "quick": quick, "precision": precision, "seed": seed,
                              "data": "cifar10-jpeg" if data_root else "synthetic"}
    rows: list[Row] = []
    b2_info: dict[str, float] | None = None

    def add(row: Row) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    for key in ALL:
        if key not in chosen:
            add(Row(key, NAMES[key], None, None, text="skipped"))
            continue
        log.info("running %s", key)
        if key == "B1":
            add(attack_step_ratio(sz, device=device, precision=precision, data_root=data_root))
        elif key == "B2":
            row, b2_info = epoch_ratio(sz, device=device, precision=precision, data_root=data_root)
            add(row)
        elif key == "B3":
            add(speedup(sz, device=device, precision=precision, data_root=data_root, seed=seed))
        elif key == "B4":
            if not gpu:
                add(Row("B4", NAMES["B4"], None, 0.55, text=GPU_ONLY))
            else:
                if b2_info is None:
                    _, b2_info = epoch_ratio(sz, device=device, precision=precision, data_root=data_root)
                add(useful_flops(b2_info, device=device))
        elif key == "B5":
            add(occupancy(n_trials=4 if quick else 16, n_train=256 if quick else 2048))
        elif key == "B6":
            add(sharing_gain(device=device, epochs=1 if quick else 3) if gpu else
                Row("B6", NAMES["B6"], None, 1.0, unit="x", text=NO_GPU))
    info["load_avg_end"] = machine(device)["load_avg"]
    return rows, info
