"""B6 (GPU): several small trials sharing one GPU, each capped to its share of the GPU's memory, against one
trial alone. Gain = total images/s of `n` concurrent trials / images/s of one trial alone.

Each trial is a separate process (as Ray runs fractional-GPU trials): it caps its caching allocator with
`cap_gpu_memory(1 / n)`, trains one untimed epoch, waits for the others at a barrier, then times `epochs` epochs.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import torch

from workers.bench.common import NO_GPU, Row, Sizes

TARGET = 1.0  # the issue sets none: sharing must at least pay for itself
SMALL = Sizes((2, 2, 2), (4.0, 4.0, 4.0), 128, 20, 1, 0, 0, 0)  # WRN-16-4, 20 batches of 128 per epoch


def cap_gpu_memory(fraction: float, device: torch.device | int = 0) -> None:
    """Limit this process's CUDA caching allocator to `fraction` of the GPU's memory (a trial with a fractional
    GPU then fails with out-of-memory instead of starving the trials it shares the GPU with)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    torch.cuda.set_per_process_memory_fraction(fraction, device)


def _trial(fraction: float, epochs: int, barrier: Any, out: Any) -> None:
    from workers.bench.common import bench_config, bench_data, sync
    from workers.trainer import Trainer

    device = torch.device("cuda", 0)
    cap_gpu_memory(fraction, device)
    cfg = bench_config(SMALL, method="sat", precision="auto", n_train=SMALL.batch * SMALL.steps)
    tr = Trainer(cfg, device=device, data_root=None, data=bench_data(cfg, data_root=None, device=device))
    tr.train_epoch(0)
    sync(device)
    barrier.wait()
    t0 = time.perf_counter()
    for e in range(epochs):
        tr.train_epoch(e)
    sync(device)
    out.put(SMALL.batch * SMALL.steps * epochs / (time.perf_counter() - t0))


def _run(n: int, epochs: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_trial, args=(1.0 / n, epochs, barrier, out)) for _ in range(n)]
    for p in procs:
        p.start()
    rates = [out.get(timeout=1800) for _ in range(n)]
    for p in procs:
        p.join()
    return float(sum(rates))


def sharing_gain(*, device: torch.device, n: int = 4, epochs: int = 3) -> Row:
    if device.type != "cuda":
        return Row("B6", f"GPU sharing gain, {n} trials", None, TARGET, unit="x", text=NO_GPU)
    alone = _run(1, epochs)
    shared = _run(n, epochs)
    return Row("B6", f"GPU sharing gain, {n} trials", shared / alone, TARGET, unit="x",
               note=f"WRN-16-4 b{SMALL.batch} PGD-10, memory cap 1/{n} each: {shared:.0f} vs {alone:.0f} img/s",
               extra={"shared_img_s": shared, "alone_img_s": alone})
