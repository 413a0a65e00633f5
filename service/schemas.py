"""Request and response schemas of the API (and the CLI's JSON output)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from search_spaces.spec import SweepSpec


class SweepRequest(BaseModel):
    """Either a preset name (plus overrides) or a full spec."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    preset: str | None = None
    overrides: dict[str, Any] = {}  # fidelity knobs (epochs, n_train, width_multiplier) or any spec field
    spec: SweepSpec | None = None
    data_root: str | None = None  # server-side path; default: the service's ROBUSTGRID_DATA_ROOT

    @model_validator(mode="after")
    def _one_source(self) -> SweepRequest:
        if (self.preset is None) == (self.spec is None):
            raise ValueError("give exactly one of 'preset' or 'spec'")
        if self.spec is not None and self.overrides:
            raise ValueError("'overrides' go with a preset; put the values into 'spec' instead")
        return self


class TrialColumns(BaseModel):
    """A trial's identity in the result-field vocabulary (what a plan lists and the store keeps)."""

    model_config = ConfigDict(from_attributes=True)

    arch: str
    depths: str
    widths: str
    params: int
    flops: int
    method: str
    lam: float
    eps: float
    norm: str
    dataset: str
    n_train: int | None
    seed: int


class PlanTrial(TrialColumns):
    est_gpu_seconds: float


class PlanTotals(BaseModel):
    n_trials: int
    params_min: int
    params_max: int
    flops_min: int
    flops_max: int
    est_gpu_hours: float
    calibrated: bool = False  # whether est_gpu_hours uses a measured throughput (robustgrid calibrate)
    macs_per_second: float | None = None
    calibration_device: str | None = None


class PlanOut(BaseModel):
    totals: PlanTotals
    trials: list[PlanTrial]


class SweepOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: str
    n_trials: int
    created_at: datetime
    code_version: str
    ray_job_id: str | None
    dashboard_url: str | None
    counts: dict[str, int] = {}
    totals: PlanTotals | None = None


class SweepDetail(SweepOut):
    spec: dict[str, Any]


class TrialOut(TrialColumns):
    id: int
    idx: int
    status: str
    error: str | None
    gpu_seconds: float | None
    config: dict[str, Any]


class ParetoOut(BaseModel):
    metrics: list[str]
    maximize: list[bool]
    n_points: int
    front: list[dict[str, Any]]


class EpsilonStarPoint(BaseModel):
    """One run at its selected epoch (smallest validation adv_loss_test). eps in [0, 1] pixel units, losses in nats."""

    trial: int
    eps: float
    epoch: int
    adv_loss_train: float
    adv_loss_test: float
    catastrophic_overfitting: bool | None  # fgsm-trained runs only; None for other methods


class EpsilonStarFast(BaseModel):
    """The fast approximation: a line through the fine-tuning runs of the clean model, extrapolated to R0."""

    method: str  # sat (PGD) | fgsm
    norm: str
    epochs: int  # fine-tuning epochs
    points: list[EpsilonStarPoint]
    missing: list[int]  # fine-tuning trials without results yet
    eps_star: float | None
    bracketed: bool  # eps* within the fine-tuning eps range (interpolated) rather than extrapolated
    lower: float | None
    upper: float | None
    slope: float | None  # nats per unit eps
    intercept: float | None  # nats
    n_points: int
    reason: str | None


class EpsilonStarGroup(BaseModel):
    """eps* of one (arch, method, lam, norm, dataset, n_train, seed) group; see service/epsilon_star.py."""

    sweep: str  # the sweep holding the from-scratch runs
    arch: str
    method: str
    lam: float
    norm: str
    dataset: str
    n_train: int | None
    seed: int
    clean_trial: int | None
    r0: float | None  # the clean run's clean test loss (final row, checkpoint best), nats
    points: list[EpsilonStarPoint]
    missing: list[int]  # trials of the group without results yet
    eps_star: float | None  # sup {eps : adv_loss_train(eps) <= R0}, linear interpolation; None: not bracketed
    bracketed: bool
    lower: float | None
    upper: float | None
    reason: str | None
    eps_star_fast: float | None
    fast: list[EpsilonStarFast]


class EpsilonStarOut(BaseModel):
    sweep_id: int
    groups: list[EpsilonStarGroup]
