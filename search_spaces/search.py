"""How a sweep explores its expanded grid: every configuration (`grid`), or an Optuna sampler over it (`tpe` on one
objective, `nsga2` on two or more) within a budget, optionally with ASHA early stopping on validation robust
accuracy. No torch and no ray here: the API validates this config; workers.tune_search builds the Ray objects.

The candidate space of a search is the expanded grid itself. `CandidateSpace` turns the expanded configs into one
ordered integer axis per hyperparameter that varies (per stage for depths and widths: `depths.0`, `widths.2`, ...),
so the samplers see the order of the values (TPE's density model and NSGA-II's crossover work per axis), and maps
a sampled point back to a stored configuration.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from search_spaces.config import MAX_EPOCHS, MAX_INT32

# What a search may optimise: each is in every result the trainable reports (known-before-training values included).
OBJECTIVE_METRICS: dict[str, str] = {
    "robust_acc": "validation robust accuracy of the best checkpoint (fraction in [0, 1]; per epoch for ASHA)",
    "params": "trainable parameters (count; known before training)",
    "macs": "multiply-accumulates of one forward pass of one image (count; known before training)",
    "trial_device_seconds": "device-seconds spent on the trial (s)",
}
MAX_SEARCH_TRIALS = 1_000_000  # a bound on a search's trial counts (its candidates are capped by max_trials anyway)
ASHA_METRIC = "robust_acc"  # ASHA compares trials on the validation robust accuracy of each epoch (maximised)


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    mode: Literal["min", "max"]

    @field_validator("metric")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in OBJECTIVE_METRICS:
            raise ValueError(f"unknown objective metric {v!r}; known: {', '.join(sorted(OBJECTIVE_METRICS))}")
        return v


class AshaConfig(BaseModel):
    """Asynchronous successive halving: rungs at grace_period * reduction_factor**k epochs (below the trials'
    epochs); at each rung a trial whose validation robust accuracy falls below the rung's top 1/reduction_factor
    quantile of the trials recorded there so far is stopped."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    grace_period: int = Field(1, le=MAX_EPOCHS)  # epochs every trial trains before it can be stopped
    reduction_factor: float = Field(2.0, le=1000.0)  # keep the top 1/reduction_factor at each rung

    @field_validator("grace_period")
    @classmethod
    def _grace(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"grace_period must be >= 1 epoch, got {v}")
        return v

    @field_validator("reduction_factor")
    @classmethod
    def _rf(cls, v: float) -> float:
        if v <= 1.0:
            raise ValueError(f"reduction_factor must be > 1, got {v}")
        return v


class SearchConfig(BaseModel):
    """The search over a sweep's expanded grid. Budgets: a search stops sampling at `budget_trials` trials or once
    the device-seconds spent (measured for finished trials, planned for running ones) reach `budget_gpu_hours`,
    whichever comes first, and never runs a configuration twice."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    algorithm: Literal["grid", "tpe", "nsga2"] = "grid"
    objectives: list[Objective] = []  # tpe: exactly one; nsga2: two or more; grid: none
    budget_trials: int | None = Field(None, le=MAX_SEARCH_TRIALS)  # trials to run (each a distinct configuration)
    budget_gpu_hours: float | None = Field(None, le=1e9)  # device-hours to spend
    scheduler: Literal["none", "asha"] = "none"
    asha: AshaConfig = AshaConfig()
    seed: int = Field(0, ge=0, le=MAX_INT32)  # the sampler's seed (numpy takes < 2**32)
    max_concurrent: int = Field(4, ge=1, le=MAX_SEARCH_TRIALS)  # trials sampled ahead of their results
    # NSGA-II generation size; None: a third of the budget, >= 4
    population_size: int | None = Field(None, ge=2, le=MAX_SEARCH_TRIALS)
    # TPE's random trials first; None: a third of the budget, >= 2
    n_startup_trials: int | None = Field(None, ge=1, le=MAX_SEARCH_TRIALS)

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[Objective], info: ValidationInfo) -> list[Objective]:
        algorithm = info.data.get("algorithm", "grid")
        names = [o.metric for o in v]
        listed = ", ".join(names) or "none"
        if len(set(names)) != len(names):
            raise ValueError(f"an objective metric appears twice ({listed})")
        if algorithm == "tpe" and len(v) != 1:
            raise ValueError(f"tpe optimises exactly one objective, got {len(v)} ({listed}); use nsga2 for two or more")
        if algorithm == "nsga2" and len(v) < 2:
            raise ValueError(f"nsga2 needs two or more objectives, got {len(v)} ({listed}); use tpe for one")
        if algorithm == "grid" and v:
            raise ValueError(f"a grid runs every configuration: objectives ({listed}) need algorithm tpe or nsga2")
        return v

    @field_validator("budget_trials", "budget_gpu_hours")
    @classmethod
    def _budget(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is None:
            return v
        if v <= 0:
            raise ValueError(f"{info.field_name} must be > 0, got {v}")
        if info.data.get("algorithm", "grid") == "grid":
            raise ValueError(f"{info.field_name}={v}: a grid runs every configuration; budgets need tpe or nsga2")
        return v

    @property
    def is_search(self) -> bool:
        """True for a sampler (tpe, nsga2): its trials are created as they are sampled, not all up front."""
        return self.algorithm != "grid"

    def trial_budget(self, n_candidates: int) -> int:
        """Trials the search may run: its budget, at most the number of distinct candidate configurations."""
        return min(self.budget_trials or n_candidates, n_candidates)

    def startup_trials(self, n_candidates: int) -> int:
        return self.n_startup_trials or max(2, self.trial_budget(n_candidates) // 3)

    def population(self, n_candidates: int) -> int:
        return self.population_size or max(4, self.trial_budget(n_candidates) // 3)


def check_epochs(search: SearchConfig, epochs: Iterable[int]) -> None:
    """ASHA needs a rung below the trials' epochs. Raises ValueError naming the numbers."""
    if search.scheduler != "asha":
        return
    longest = max(epochs)
    if search.asha.grace_period >= longest:
        raise ValueError(f"asha.grace_period {search.asha.grace_period} epochs must be below the trials' "
                         f"{longest} epochs, or no trial could ever be stopped early")


# ------------------------------------------------------------------------------------------- the candidate space


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"depths": [1, 3], "train_attack": {"steps": 2}} -> {"depths.0": 1, "depths.1": 3, "train_attack.steps": 2}."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out.update(flatten({str(i): v for i, v in enumerate(value)}, f"{name}."))
        else:
            out[name] = value
    return out


def _order(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, 0)
    if isinstance(v, bool | int | float):
        return (1, float(v))
    return (2, str(v))


class CandidateSpace:
    """The distinct configurations of a search as points on integer axes, one axis per varying hyperparameter
    (values in ascending order). Pure: the Ray searcher and the tests use the same mapping."""

    def __init__(self, configs: Sequence[dict[str, Any]]):
        if not configs:
            raise ValueError("a search needs at least one candidate configuration")
        flat = [flatten(c) for c in configs]
        keys = sorted(set(itertools.chain.from_iterable(flat)))
        values = {k: sorted({f.get(k) for f in flat}, key=_order) for k in keys}
        self.axes: dict[str, list[Any]] = {k: v for k, v in values.items() if len(v) > 1}
        self.points: list[tuple[int, ...]] = [
            tuple(self.axes[k].index(f.get(k)) for k in self.axes) for f in flat
        ]
        self._index: dict[tuple[int, ...], int] = {}
        for i, p in enumerate(self.points):
            self._index.setdefault(p, i)

    def __len__(self) -> int:
        return len(self.points)

    def params_of(self, i: int) -> dict[str, int]:
        """The sampler's parameters (axis -> value index) of candidate i."""
        return dict(zip(self.axes, self.points[i], strict=True))

    def index_of(self, params: dict[str, int]) -> int | None:
        """The candidate at exactly these axis indices, or None (a combination the spec does not contain)."""
        return self._index.get(tuple(int(params[k]) for k in self.axes))

    def nearest(self, params: dict[str, int], exclude: set[int]) -> int | None:
        """The candidate closest to `params` (L1 over axis indices; ties: the lowest index) outside `exclude`."""
        target = [int(params[k]) for k in self.axes]
        best: tuple[int, int] | None = None
        for i, p in enumerate(self.points):
            if i in exclude:
                continue
            d = sum(abs(a - b) for a, b in zip(p, target, strict=True))
            if best is None or d < best[0]:
                best = (d, i)
        return None if best is None else best[1]
