"""Request and response schemas of the API (and the CLI's JSON output)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from db.contract import CONFIG_FIELDS, ResultRow
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


# A trial's identity in the result-field vocabulary (what a plan lists and the store keeps), derived from the
# contract's ResultRow so the names and types cannot drift.
TrialColumns = create_model(
    "TrialColumns",
    __config__=ConfigDict(from_attributes=True),
    **{f: (ResultRow.model_fields[f].annotation, ...) for f in CONFIG_FIELDS},  # type: ignore[call-overload]
)


class PlanTrial(TrialColumns):  # type: ignore[misc,valid-type]
    est_device_seconds: float  # planned device-seconds (s): training plus evaluation


class PlanTotals(BaseModel):
    n_trials: int
    params_min: int
    params_max: int
    macs_min: int
    macs_max: int
    est_device_hours: float
    calibrated: bool = False  # whether est_device_hours uses a measured throughput (robustgrid calibrate)
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
    error: str | None = None  # why the sweep failed (e.g. its Ray job could not start)
    counts: dict[str, int] = {}
    totals: PlanTotals | None = None


class SweepDetail(SweepOut):
    spec: dict[str, Any]


class TrialOut(TrialColumns):  # type: ignore[misc,valid-type]
    id: int
    idx: int
    status: str
    error: str | None
    device_seconds: float | None  # the whole trial: training and evaluations (s)
    device: str | None  # provenance: cpu, or the CUDA device's name
    node: str | None  # provenance: host name and IP
    code_version: str
    config: dict[str, Any]


class CurveRow(ResultRow):
    """One epoch of a trial's training curve: the result fields, then the epoch's extras."""

    lr: float | None = None  # per batch of batch_size, at the epoch's last batch
    lam_trajectory: list[float] | None = None


class ParetoOut(BaseModel):
    metrics: list[str]
    maximize: list[bool]
    n_points: int
    front: list[dict[str, Any]]


class EpsilonStarPoint(BaseModel):
    """One run at its selected epoch (smallest validation adv_loss_val). eps in [0, 1] pixel units, losses in nats."""

    trial: int
    eps: float
    epoch: int
    adv_loss_train: float
    adv_loss_val: float
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
