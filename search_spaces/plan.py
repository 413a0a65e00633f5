"""The plan of a sweep: every trial config with its parameter count, MACs and an estimated cost; nothing runs.

Counting is closed-form for the WRN body (search_spaces.counting, microseconds per network, no torch); other
models are built on torch's meta device (workers.models.model_counts).

Cost model: a trial's device-seconds = MACs it performs / the device's sustained MACs per second. The MACs come
from the network's forward MACs times the forward-pass equivalents of each training and evaluation step
(`train_passes`, `eval_passes`); the rate comes from a calibration measured on the device by
`robustgrid calibrate` (workers.calibrate, stored as JSON at `<storage_path>/calibration.json`), else from
DEFAULT_MACS_PER_SECOND, in which case the plan's totals say `calibrated: false`. The storage path is an argument
(the service's setting, passed in); without one there is no calibration.

Dataset sizes (classes for the head, image size, images per split) come from search_spaces.data_sizes: the catalog
for fixed datasets, the tree under the data root for image folders.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from search_spaces.config import TrialConfig, join_nums
from search_spaces.counting import analytic_counts
from search_spaces.data_sizes import DataSizes, data_sizes
from search_spaces.spec import MAX_COUNT, SpecError, SweepSpec, config_hash, expand

log = logging.getLogger(__name__)

# Throughput model: multiply-accumulates per second a trial sustains on the reference device. The default is a
# conservative figure for one H100 running bf16 WRN training (about 25% of its dense bf16 peak, in MACs).
DEFAULT_MACS_PER_SECOND = 1.0e14
CALIBRATION_FILE = "calibration.json"

# Forward-pass equivalents per training example besides the attack (a backward costs ~2 forwards; an attack step
# ~2: a forward and the input-gradient backward), read off workers.methods:
#   clean: fwd+bwd = 3.  sat, fgsm: adversarial fwd+bwd 3 + clean forward without gradient 1 = 4.
#   gat, mart, war_gat: clean and adversarial fwd+bwd = 6.  trades, war_trades: 6 + the attack's target forward 1.
TRAIN_PASSES: dict[str, int] = {"clean": 3, "sat": 4, "fgsm": 4, "gat": 6, "mart": 6, "war_gat": 6, "trades": 7,
                                "war_trades": 7}
ATTACK_STEP_PASSES = 2


def train_passes(cfg: TrialConfig) -> int:
    """Forward-pass equivalents of one training example of `cfg` (method passes + 2 per attack step)."""
    steps = 0 if cfg.method == "clean" else cfg.train_attack.steps
    return TRAIN_PASSES.get(cfg.method, 6) + ATTACK_STEP_PASSES * steps


def eval_passes(cfg: TrialConfig) -> int:
    """Forward-pass equivalents of evaluating one example: the clean forward, and at eps > 0 the attack and the
    adversarial forward (workers.evaluate; at eps = 0 there is no attack)."""
    return 1 if cfg.eps == 0.0 else 2 + ATTACK_STEP_PASSES * cfg.eval_attack.steps


@dataclass(frozen=True)
class Calibration:
    """A measured throughput of the device (workers.calibrate), stored as JSON next to the Ray results."""

    device: str  # e.g. "cuda: NVIDIA H100 80GB HBM3" or "cpu: x86_64, 2 threads"
    macs_per_second: float  # sustained multiply-accumulates per second of adversarial training
    measured_at: str  # ISO 8601, UTC
    code_version: str
    probe: dict[str, Any] = field(default_factory=dict)  # what was timed: model, depths, widths, batch, steps, ...

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        rate = float(d["macs_per_second"])
        if not rate > 0:
            raise ValueError(f"macs_per_second must be > 0, got {rate}")
        return cls(device=str(d["device"]), macs_per_second=rate, measured_at=str(d["measured_at"]),
                   code_version=str(d.get("code_version", "")), probe=dict(d.get("probe") or {}))


def calibration_path(storage_path: str | None) -> Path | None:
    """`<storage_path>/calibration.json`; None without a storage path or for remote storage (s3://...)."""
    if not storage_path or "://" in storage_path:
        return None
    return Path(storage_path).expanduser() / CALIBRATION_FILE


def save_calibration(cal: Calibration, storage_path: str) -> Path:
    """Write the calibration atomically (a temporary file renamed into place); returns its path."""
    path = calibration_path(storage_path)
    if path is None:
        raise SpecError("storage_path", f"{storage_path!r} is remote; the calibration needs a local directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(cal.to_json())
    tmp.replace(path)
    return path


def load_calibration(storage_path: str | None) -> Calibration | None:
    """The stored calibration, or None when there is none (or it is unreadable, which is logged)."""
    path = calibration_path(storage_path)
    if path is None or not path.is_file():
        return None
    try:
        return Calibration.from_dict(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        log.warning("ignoring the calibration at %s: %s", path, e)
        return None


@dataclass(frozen=True)
class PlannedTrial:
    config: TrialConfig
    config_hash: str
    params: int  # trainable parameters
    macs: int  # multiply-accumulates of one forward pass of one image
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
            "macs": self.macs,
            "method": c.method,
            "lam": c.lam,
            "eps": c.eps,
            "norm": c.norm,
            "dataset": c.provenance_dataset,
            "n_train": c.n_train,
            "seed": c.seed,
            "est_device_seconds": round(self.est_seconds, 1),
        }

    def stored_row(self) -> dict[str, Any]:
        """The trial's row as the store takes it (db.sweeps.create_sweep / add_trials): the columns of `row()`
        without the estimate, plus the full config and its hash."""
        row = self.row()
        row.pop("est_device_seconds")
        return row | {"config": self.config.model_dump(mode="json"), "config_hash": self.config_hash}


@dataclass
class Plan:
    spec: SweepSpec
    trials: list[PlannedTrial] = field(default_factory=list)
    calibration: Calibration | None = None  # None: DEFAULT_MACS_PER_SECOND

    @property
    def macs_per_second(self) -> float:
        return self.calibration.macs_per_second if self.calibration else DEFAULT_MACS_PER_SECOND

    def totals(self) -> dict[str, Any]:
        params = [t.params for t in self.trials]
        cal = self.calibration
        return {
            "n_trials": len(self.trials),
            "params_min": min(params),
            "params_max": max(params),
            "macs_min": min(t.macs for t in self.trials),
            "macs_max": max(t.macs for t in self.trials),
            "est_device_hours": round(sum(t.est_seconds for t in self.trials) / 3600, 3),
            "calibrated": cal is not None,
            "macs_per_second": self.macs_per_second,
            "calibration_device": cal.device if cal else None,
            "cost_unit": cost_unit(cal.device if cal else None),
        }


def cost_unit(calibration_device: str | None) -> str:
    """What the plan's hours are hours of: the calibrated device's kind (`cpu-hours` when `robustgrid calibrate`
    measured a CPU, `gpu-hours` for a CUDA device), else `device-hours` of the uncalibrated default rate."""
    if calibration_device is None:
        return "device-hours"
    return "gpu-hours" if calibration_device.startswith("cuda") else f"{calibration_device.split(':')[0]}-hours"


@functools.lru_cache(maxsize=4096)
def counts(model: str, depths: tuple[int, ...], widths: tuple[float, ...], num_classes: int, channels: int, size: int) -> tuple[int, int]:
    """(parameters, forward MACs per image): closed form where search_spaces.counting covers the model, else
    built on the meta device."""
    exact = analytic_counts(model, depths, widths, num_classes, channels, size)
    if exact is not None:
        return exact
    from workers.models import model_counts  # the one place search_spaces reaches into workers (see architecture.md)

    return model_counts(model, depths=depths, widths=widths, num_classes=num_classes, in_channels=channels, input_size=size)


def estimate_seconds(cfg: TrialConfig, macs: int, macs_per_second: float = DEFAULT_MACS_PER_SECOND, *,
                     sizes: DataSizes | None = None) -> float:
    """Device-seconds of one trial: every epoch trains on n_train examples (`train_passes` each) and validates
    on val_size (`eval_passes`); the final evaluation runs on n_test at the best and the last checkpoint.
    `sizes`: the dataset's (default: the catalog's, for datasets that need no data root)."""
    info = sizes or data_sizes(cfg.dataset)
    n_train = cfg.n_train or max(info.n_train - cfg.val_size, 1)
    per_epoch = n_train * train_passes(cfg) + cfg.val_size * eval_passes(cfg)
    n_test = cfg.n_test or info.n_test
    final = 2 * n_test * eval_passes(cfg)
    return macs * (cfg.epochs * per_epoch + final) / macs_per_second


def _count(cfg: TrialConfig, info: DataSizes) -> tuple[int, int]:
    try:
        params, macs = counts(cfg.model, cfg.depths, cfg.widths, info.num_classes, info.channels, info.image_size)
    except ValueError as e:
        raise SpecError("model" if "model" in str(e) else "depths", str(e)) from None
    if max(params, macs) > MAX_COUNT:  # e.g. the largest depths and widths on large images: not storable
        raise SpecError("widths", f"{cfg.arch} has {params:,} parameters and {macs:,} MACs per image, more than "
                                  f"the store's 64-bit integers hold ({MAX_COUNT:,})")
    return params, macs


def _within(value: int, low: int | None, high: int | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def make_plan(spec: SweepSpec, *, max_trials: int = 2000, calibration: Calibration | None = None,
              storage_path: str | None = None, data_root: str | None = None) -> Plan:
    """Expand, count, apply the spec's constraints and the trial limit; cost with `calibration`, else the one
    stored under `storage_path`, else the default rate. An image-folder dataset is sized from its tree under
    `data_root` (required for it). Raises SpecError."""
    configs = expand(spec)
    sizes = data_sizes(spec.dataset, data_root)
    if len(configs) > max_trials:
        raise SpecError("spec", f"{len(configs)} trials exceed the maximum of {max_trials} (setting max_trials)")
    plan = Plan(spec=spec, calibration=calibration or load_calibration(storage_path))
    c = spec.constraints
    counted = [(cfg, *_count(cfg, sizes)) for cfg in configs]
    for cfg, params, macs in counted:
        if _within(params, c.min_params, c.max_params) and _within(macs, c.min_macs, c.max_macs):
            est = estimate_seconds(cfg, macs, plan.macs_per_second, sizes=sizes)
            plan.trials.append(PlannedTrial(cfg, config_hash(cfg), params, macs, est))
    if not plan.trials:
        bounds = ", ".join(f"{k}={v:,}" for k, v in c.model_dump().items() if v is not None)
        ps, fs = [p for _, p, _ in counted], [f for _, _, f in counted]
        raise SpecError("constraints", f"{bounds} leave none of the {len(configs)} trials (params "
                        f"{min(ps):,}..{max(ps):,}, macs {min(fs):,}..{max(fs):,})")
    return plan
