"""The plan of a sweep: every trial config with its parameter count, FLOPs and an estimated cost; nothing runs.

Counting builds each network on torch's meta device (workers.models.model_counts), so planning the 125-network
grid takes seconds and allocates no weights.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from search_spaces.catalog import DATASETS
from search_spaces.config import TrialConfig, join_nums
from search_spaces.spec import SpecError, SweepSpec, config_hash, expand

# Throughput model: multiply-accumulates per second a trial sustains on the reference device. The default is a
# conservative figure for one H100 running bf16 WRN training (about 25% of its dense bf16 peak, in MACs).
DEFAULT_MACS_PER_SECOND = 1.0e14


@dataclass(frozen=True)
class PlannedTrial:
    config: TrialConfig
    config_hash: str
    params: int  # trainable parameters
    flops: int  # multiply-accumulates of one forward pass of one image
    est_seconds: float  # device-seconds for training plus evaluation

    @property
    def arch(self) -> str:
        return self.config.arch

    def row(self) -> dict[str, Any]:
        """The trial's columns, in the result-field vocabulary (what the DB stores and `plan --json` prints)."""
        c = self.config
        return {
            "arch": c.arch,
            "depths": join_nums(c.depths),
            "widths": join_nums(c.widths),
            "params": self.params,
            "flops": self.flops,
            "method": c.method,
            "lam": c.lam,
            "eps": c.eps,
            "norm": c.norm,
            "dataset": c.provenance_dataset,
            "n_train": c.n_train,
            "seed": c.seed,
            "est_gpu_seconds": round(self.est_seconds, 1),
        }


@dataclass
class Plan:
    spec: SweepSpec
    trials: list[PlannedTrial] = field(default_factory=list)

    def totals(self) -> dict[str, Any]:
        params = [t.params for t in self.trials]
        return {
            "n_trials": len(self.trials),
            "params_min": min(params),
            "params_max": max(params),
            "flops_min": min(t.flops for t in self.trials),
            "flops_max": max(t.flops for t in self.trials),
            "est_gpu_hours": round(sum(t.est_seconds for t in self.trials) / 3600, 3),
        }


@functools.lru_cache(maxsize=4096)
def counts(model: str, depths: tuple[int, ...], widths: tuple[float, ...], num_classes: int, channels: int, size: int) -> tuple[int, int]:
    from workers.models import model_counts  # the one place search_spaces reaches into workers (see architecture.md)

    return model_counts(model, depths=depths, widths=widths, num_classes=num_classes, in_channels=channels, input_size=size)


def estimate_seconds(cfg: TrialConfig, flops: int, macs_per_second: float = DEFAULT_MACS_PER_SECOND) -> float:
    """Device-seconds of one trial: a training step costs ~3 forward passes, an attack step ~2 (forward plus the
    input-gradient backward); validation runs the evaluation attack every epoch; the final evaluation runs it
    on the best and the last checkpoint."""
    info = DATASETS[cfg.dataset]
    n_train = cfg.n_train or max(info["n_train"] - cfg.val_size, 1)
    train_steps = 0 if cfg.method == "clean" else cfg.train_attack.steps
    per_epoch = n_train * (3 + 2 * train_steps) + cfg.val_size * (1 + 2 * cfg.eval_attack.steps)
    n_test = cfg.n_test or 10_000
    final = 2 * n_test * (1 + 2 * cfg.eval_attack.steps)
    return flops * (cfg.epochs * per_epoch + final) / macs_per_second


def _count(cfg: TrialConfig) -> tuple[int, int]:
    info = DATASETS[cfg.dataset]
    try:
        return counts(cfg.model, cfg.depths, cfg.widths, info["num_classes"], info["channels"], info["image_size"])
    except ValueError as e:
        raise SpecError("model" if "model" in str(e) else "depths", str(e)) from None


def make_plan(spec: SweepSpec, *, max_trials: int = 2000) -> Plan:
    """Expand, count, apply the spec's constraints and the trial limit. Raises SpecError naming the field."""
    configs = expand(spec)
    if len(configs) > max_trials:
        raise SpecError("spec", f"{len(configs)} trials exceed the maximum of {max_trials}")
    plan = Plan(spec=spec)
    c = spec.constraints
    for cfg in configs:
        params, flops = _count(cfg)
        if c.min_params is not None and params < c.min_params or c.max_params is not None and params > c.max_params:
            continue
        if c.min_flops is not None and flops < c.min_flops or c.max_flops is not None and flops > c.max_flops:
            continue
        plan.trials.append(PlannedTrial(cfg, config_hash(cfg), params, flops, estimate_seconds(cfg, flops)))
    if not plan.trials:
        raise SpecError("constraints", f"the constraints leave none of the {len(configs)} trials")
    return plan
