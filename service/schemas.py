"""Request and response schemas of the API (and the CLI's JSON output)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from db.contract import CONFIG_FIELDS, ResultRow
from search_spaces.spec import SweepSpec


def unflatten(data: dict[str, Any]) -> dict[str, Any]:
    """{"training.n_test": 100, "training": {"epochs": 2}} -> {"training": {"epochs": 2, "n_test": 100}}."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        head, dot, rest = key.partition(".")
        if dot and head and rest:
            inner = out.setdefault(head, {})
            if not isinstance(inner, dict):
                raise ValueError(f"overrides: {head!r} is given as a value and as {key!r}")
            inner.update(unflatten({rest: value}))
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return out


def as_utc(value: datetime) -> datetime:
    """Stored times are UTC; SQLite hands them back naive, so the API marks them (`+00:00`) on every backend."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Every datetime the API returns: aware, UTC, written `2026-01-02T03:04:05.123456+00:00` on every backend.
UtcDatetime = Annotated[datetime, AfterValidator(as_utc),
                        PlainSerializer(lambda v: v.isoformat(), return_type=str, when_used="json"),
                        WithJsonSchema({"type": "string", "format": "date-time"})]


class SweepRequest(BaseModel):
    """Either a preset name (plus overrides) or a full spec."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    preset: str | None = None
    overrides: dict[str, Any] = {}  # fidelity knobs (epochs, n_train, width_multiplier) or any spec field
    spec: SweepSpec | None = None
    data_root: str | None = None  # server-side path; default: the service's ROBUSTGRID_DATA_ROOT

    @field_validator("overrides", mode="before")
    @classmethod
    def _nested(cls, v: Any) -> Any:
        """`{"training.n_test": 100}` (as the CLI's --set) and `{"training": {"n_test": 100}}` alike: dotted keys
        become nested dicts, merged key by key with a nested one given too."""
        return unflatten(v) if isinstance(v, dict) else v

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
    cost_unit: str = "device-hours"  # cpu-hours or gpu-hours once `robustgrid calibrate` measured the device


class PlanOut(BaseModel):
    totals: PlanTotals
    trials: list[PlanTrial]


class SweepOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: str
    n_trials: int
    created_at: UtcDatetime
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
    retries: int = 0  # times the trial was restarted from its last checkpoint after a failure
    batch_size_used: int | None = None  # training batch size it ran with (its config's, or halved after an OOM)
    code_version: str
    config: dict[str, Any]


class CurveRow(ResultRow):
    """One epoch of a trial's training curve: the result fields, then the epoch's extras."""

    lr: float | None = None  # per batch of batch_size, at the epoch's last batch
    lam_trajectory: list[float] | None = None


class ResultOut(ResultRow):
    """A result row as the API answers it: the contract's fields, then the binomial standard errors derived from the
    counts on read (None without n_total: per-epoch rows, imported rows without counts)."""

    clean_acc_se: float | None = None
    robust_acc_se: float | None = None
    stability_se: float | None = None


def _aggregate_fields() -> dict[str, Any]:
    from db.contract import LIST_FIELDS, NUMERIC_FIELDS, RESULT_FIELDS
    from db.stats import COUNT_FIELDS, GROUP_FIELDS, SE_FIELDS

    out: dict[str, Any] = {f: (ResultRow.model_fields[f].annotation, None) for f in GROUP_FIELDS}
    out |= {"epoch": (float | None, None), "n_seeds": (int, ...), "seeds": (list[int], ...), "status": (str, ...)}
    for f in RESULT_FIELDS:
        if f in out or f in LIST_FIELDS or f not in NUMERIC_FIELDS or f in ("trial", "seed"):
            continue
        out[f] = ((int | None) if f in COUNT_FIELDS else (float | None), None)
        if f not in COUNT_FIELDS:
            out[f"{f}_std"] = (float | None, None)
    out["epoch_std"] = (float | None, None)  # final rows: the checkpoint's epoch is averaged too
    return out | {f: (float | None, None) for f in SE_FIELDS}


# A configuration's results over seeds (`aggregate=seeds`): the group's fields, n_seeds and seeds, the mean of every
# metric under its own name with `<metric>_std` (sample std over seeds), summed counts and their standard errors.
AggregateRow = create_model("AggregateRow", **_aggregate_fields())  # type: ignore[call-overload]


class ParetoPoint(ResultOut):
    within_noise: bool | None = None  # its place on the front rests on differences within 2 standard errors


class ParetoOut(BaseModel):
    metrics: list[str]
    maximize: list[bool]
    n_points: int
    front: list[ParetoPoint]
    front_within_noise: bool | None = None  # some point within noise (None: no counts to tell)
    note: str = ""  # the verdict in one sentence


class PresetOut(BaseModel):
    name: str
    description: str
    n_trials: int  # trials of the preset at its own fidelity (no overrides)
    params: dict[str, Any]  # the preset's own parameters and their defaults


class ImportRequest(BaseModel):
    """External results to store as an imported reference sweep: rows in the result vocabulary (db.imports says
    which fields are read and what happens to the other columns)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    source: str | None = Field(None, max_length=2000)  # where the rows come from (paper, file)
    rows: list[dict[str, Any]] = Field(min_length=1)


class ImportOut(BaseModel):
    sweep_id: int
    name: str
    n_trials: int
    n_final: int  # final rows stored (per checkpoint and attack)
    n_epoch: int  # per-epoch rows stored


class EpsilonStarPoint(BaseModel):
    """One run at its selected epoch: the smallest held-out adversarial loss (validation adv_loss_val, or
    adv_loss_test under select_on 'test'), the earliest on ties. eps in [0, 1] pixel units, losses in nats."""

    trial: int
    eps: float
    epoch: int
    adv_loss_train: float
    split: Literal["val", "test"]  # where the selecting loss was measured
    adv_loss_val: float | None
    adv_loss_test: float | None  # per-epoch on the test set: select_on 'test' only
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
    r0: float | None  # the clean run's clean held-out loss at its selected epoch (the points' rule), nats
    r0_epoch: int | None
    r0_split: Literal["val", "test"] | None  # val: validation split; test: the test set (select_on 'test')
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
