"""What every benchmark shares: the result row and its PASS/BELOW rule, the benchmark sizes per device, the data
(real images under --data-root, synthetic otherwise), interleaved timing, and a description of the machine."""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from search_spaces.config import TrialConfig
from workers.data import DataSplits, load_splits

NO_GPU = "not measured: no GPU lent"
GPU_ONLY = "n/a (GPU only)"


@dataclass
class Row:
    """One line of the table. `better`: which direction meets the target; `floor`: the best value the work
    allows in principle (a value beyond it is flagged: the timing or the model of the work is off)."""

    key: str  # B1 .. B6
    name: str
    value: float | None
    target: float | None
    floor: float | None = None
    better: Literal["lower", "higher"] = "higher"
    unit: str = ""
    text: str | None = None  # shown instead of a value (n/a, not measured)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # raw measurements, for the JSON output

    @property
    def status(self) -> str:
        if self.value is None or self.target is None or not math.isfinite(self.value):
            return "-"
        ok = self.value <= self.target if self.better == "lower" else self.value >= self.target
        return "PASS" if ok else "BELOW"

    def beyond_floor(self) -> bool:
        if self.value is None or self.floor is None:
            return False
        return self.value < self.floor if self.better == "lower" else self.value > self.floor


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:.3g}{unit}" if abs(v) < 100 else f"{v:.0f}{unit}"


def render(rows: list[Row]) -> str:
    """The table: one row per benchmark with its value, target, floor and status."""
    head = ("bench", "what", "value", "target", "floor", "status", "note")
    body = []
    for r in rows:
        rel = "<=" if r.better == "lower" else ">="
        value = r.text if r.text is not None else _fmt(r.value, r.unit)
        note = r.note + (" [beyond the floor: check]" if r.beyond_floor() else "")
        body.append((r.key, r.name, value, f"{rel} {_fmt(r.target, r.unit)}" if r.target is not None else "-",
                     _fmt(r.floor, r.unit), r.status, note))
    widths = [max(len(str(x[i])) for x in (head, *body)) for i in range(len(head) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(x[:-1], widths)) + "  " + x[-1] for x in (head, *body)]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


# --------------------------------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """The workload of B1-B3 on one device. Images in batches of `batch`; epochs of `steps` batches."""

    depths: tuple[int, ...]
    widths: tuple[float, ...]
    batch: int
    steps: int  # batches per timed epoch (B2)
    repeats: int  # timed repetitions (median reported)
    b3_train: int  # training images of B3
    b3_epochs: int  # epochs each loop trains in B3
    b3_test: int  # test images of B3's PGD-20 comparison


SIZES = {
    ("cpu", True): Sizes((1, 1, 1), (1.0, 1.0, 1.0), 32, 2, 3, 256, 1, 128),
    ("cpu", False): Sizes((1, 1, 1), (2.0, 2.0, 2.0), 128, 4, 5, 2560, 3, 1000),
    ("cuda", True): Sizes((1, 1, 1), (2.0, 2.0, 2.0), 128, 4, 3, 1024, 1, 512),
    ("cuda", False): Sizes((5, 5, 5), (10.0, 10.0, 10.0), 128, 20, 5, 10000, 3, 2000),
}


def sizes_for(device: torch.device, quick: bool) -> Sizes:
    return SIZES[("cuda" if device.type == "cuda" else "cpu", quick)]


def bench_config(sz: Sizes, *, method: str, precision: str, n_train: int, seed: int = 0, steps: int = 10,
                 real: bool = False, n_test: int | None = None) -> TrialConfig:
    """A trial of the benchmark workload: WRN `sz`, PGD-`steps` (step 2/255, eps 8/255), constant lr 0.1 per batch
    of `sz.batch`, no validation split (timings cover training only)."""
    return TrialConfig(
        model="wrn", depths=sz.depths, widths=sz.widths, method=method, dataset="cifar10-jpeg" if real else "synthetic",
        n_train=n_train, val_size=0, select_on="last", n_test=n_test, epochs=max(sz.b3_epochs, 2), batch_size=sz.batch, lr=0.1,
        schedule={"kind": "constant"}, train_attack={"steps": steps, "step_size": 2 / 255}, seed=seed,
        precision=precision,  # type: ignore[arg-type]
    )


def bench_data(cfg: TrialConfig, *, data_root: str | None, device: torch.device, n_test: int = 16) -> DataSplits:
    """Real images (cifar10-jpeg under data_root) when given, else synthetic ones, on `device`."""
    if data_root is not None:
        return load_splits(cfg, data_root=data_root, device=device)
    assert cfg.n_train is not None
    return load_splits(cfg, data_root=None, device=device,
                       source_options={"n_train": cfg.n_train, "n_test": max(cfg.n_test or 0, n_test)})


# --------------------------------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], object]], *, device: torch.device, repeats: int, warmup: int = 1
                ) -> dict[str, list[float]]:
    """Seconds of each function over `repeats` rounds; within a round the functions run one after the other, so
    a change of machine load hits all of them alike. `warmup` untimed rounds first."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    sync(device)
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            sync(device)
            out[k].append(time.perf_counter() - t0)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def median_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num/den, each round's pair timed back to back."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


# --------------------------------------------------------------------------------------------------- machine


def machine(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on, with the load average at the time."""
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cpu": _cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads()}
    try:
        info["load_avg"] = tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        info["load_avg"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
