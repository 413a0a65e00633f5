"""Measure the device's training throughput (MACs per second) for the planner's cost model.

The probe is a real trial: a small stage-wise WRN trained by `workers.trainer.Trainer` with a real method (SAT
with a short PGD) on synthetic images held on the device, in the precision trials use there (bf16 autocast on
CUDA, fp32 on CPU). One epoch of `steps` steps warms up (allocator, cuDNN autotuning), then `repeats` epochs are
timed and the median is kept. The MACs of a step are counted with the planner's own model
(search_spaces.plan.train_passes: forward-pass equivalents per example x forward MACs x batch), so
`estimate_seconds` divided by a measured rate predicts seconds on this device for the same kind of work.

Small probes under-use a big GPU: the CUDA default (WRN-16-8, batch 128, PGD-10) is sized to keep an H100 busy;
probe a network like the sweep's (`depths`, `widths`) for a closer estimate.
"""

from __future__ import annotations

import platform
import statistics
import time
from datetime import UTC, datetime

import torch

from search_spaces.catalog import DATASETS
from search_spaces.config import TrialConfig
from search_spaces.plan import Calibration, counts, train_passes
from search_spaces.provenance import code_version
from workers.data import load_splits
from workers.trainer import Trainer

# per device type: (depths, widths, batch size, timed steps per epoch, PGD steps)
PROBES: dict[str, tuple[tuple[int, ...], tuple[float, ...], int, int, int]] = {
    "cuda": ((2, 2, 2), (8.0, 8.0, 8.0), 128, 20, 10),
    "cpu": ((1, 1, 1), (1.0, 1.0, 1.0), 32, 2, 2),
}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"{device.type}: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def probe_config(device: torch.device, *, depths: tuple[int, ...] | None = None, widths: tuple[float, ...] | None = None,
                 batch_size: int | None = None, steps: int | None = None, attack_steps: int | None = None) -> TrialConfig:
    """The probe trial: SAT on `synthetic`, exactly `steps` batches per epoch (n_train = steps * batch_size)."""
    d, w, b, s, k = PROBES["cuda" if device.type == "cuda" else "cpu"]
    batch, n_steps = batch_size or b, steps or s
    return TrialConfig(
        model="wrn", depths=depths or d, widths=widths or w, method="sat", dataset="synthetic",
        n_train=max(batch * n_steps, 10), val_size=0, select_on="last", epochs=2, batch_size=batch, schedule={"kind": "constant"},
        train_attack={"steps": attack_steps or k, "step_size": 2 / 255}, seed=0,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calibrate(device: torch.device, *, repeats: int = 3, **probe: int | tuple[int, ...] | tuple[float, ...] | None
              ) -> Calibration:
    """Time the probe trial's epochs on `device`; MACs per second of the median epoch. `probe`: see probe_config."""
    cfg = probe_config(device, **probe)  # type: ignore[arg-type]
    assert cfg.n_train is not None
    data = load_splits(cfg, data_root=None, device=device, source_options={"n_train": cfg.n_train, "n_test": 16})
    trainer = Trainer(cfg, device=device, data_root=None, data=data)
    info = DATASETS[cfg.dataset]
    _, macs_per_image = counts(cfg.model, cfg.depths, cfg.widths, info["num_classes"], info["channels"], info["image_size"])
    steps = len(data.train_y) // cfg.batch_size
    trainer.train_epoch(0)  # warm-up
    seconds = []
    for _ in range(max(repeats, 1)):
        _sync(device)
        t0 = time.perf_counter()
        trainer.train_epoch(1)
        _sync(device)
        seconds.append(time.perf_counter() - t0)
    epoch_s = statistics.median(seconds)
    macs = macs_per_image * cfg.batch_size * steps * train_passes(cfg)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")  # as trainer.autocast
    return Calibration(
        device=device_name(device), macs_per_second=macs / epoch_s,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"), code_version=code_version(),
        probe={"arch": cfg.arch, "method": cfg.method, "attack_steps": cfg.train_attack.steps,
               "batch_size": cfg.batch_size, "steps": steps, "repeats": len(seconds), "macs_per_image": macs_per_image,
               "seconds_per_step": epoch_s / steps, "precision": "bf16" if bf16 else "fp32",
               "torch": torch.__version__},
    )
