"""The typed sweep specification and its expansion into trial configs.

A spec names, per axis, the values to try; the expansion is the cartesian product of the axes (or of zipped
groups of axes), with per-stage depth and width lists themselves expanded as a product across stages:
`depths=[[1, 3], [5], [5]]` gives d1-5-5 and d3-5-5. No torch here: the API validates specs with this module.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from search_spaces.catalog import DATASETS, METHOD_DEFAULTS, known
from search_spaces.config import (
    EVAL_PRESETS,
    MAX_INT32,
    MAX_LAM,
    MAX_STAGE_DEPTH,
    MAX_STAGES,
    MAX_WIDTH,
    EvalPreset,
    Norm,
    TrialConfig,
)
from search_spaces.search import SearchConfig

AXES = ("depths", "widths", "gamma", "method", "lam", "eps", "norm", "n_train", "seeds")


class SpecError(ValueError):
    """A spec that cannot be expanded: `field` names the offending field, `reason` says why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


MAX_COUNT = 2**63 - 1  # parameters and MACs are stored as 64-bit integers

def _not_bool(v: Any) -> Any:
    if isinstance(v, bool):  # pydantic's lax float takes true as 1.0: `lam: false` would be lambda 0
        raise ValueError("a boolean is not a number")  # noqa: TRY004 - pydantic reports only ValueError
    return v


Number = Annotated[float, BeforeValidator(_not_bool)]  # a float axis value: an int or a float, never a bool


Seed = Annotated[int, Field(ge=0, le=MAX_INT32), Strict()]  # strict: `false` and "1" are not seeds
NTrain = Annotated[int, Field(ge=10, le=MAX_INT32), Strict()]
Depth = Annotated[int, Strict()]
Lam = Annotated[float, Field(le=MAX_LAM), BeforeValidator(_not_bool)]
Scale = Annotated[float, Field(le=MAX_WIDTH), BeforeValidator(_not_bool)]


class Constraints(BaseModel):
    """Budgets applied to the expanded plan before launch (parameters and multiply-accumulates per image)."""

    model_config = ConfigDict(extra="forbid")

    min_params: int | None = Field(None, ge=0, le=MAX_COUNT)
    max_params: int | None = Field(None, ge=0, le=MAX_COUNT)
    min_macs: int | None = Field(None, ge=0, le=MAX_COUNT)
    max_macs: int | None = Field(None, ge=0, le=MAX_COUNT)


def _as_list(v: Any) -> Any:
    return v if isinstance(v, list | tuple) else [v]


SCALAR_AXES = ("gamma", "method", "lam", "eps", "norm", "n_train", "seeds")  # a single value is a one-value list
STAGE_AXES = ("depths", "widths")  # per stage: a single value is that stage's one choice


def _or_item(schema: dict[str, Any]) -> dict[str, Any]:
    """An array's schema (or an anyOf holding arrays) widened to take one item as well: what `_as_list` accepts."""
    variants = schema.get("anyOf", [schema])
    items = [v["items"] for v in variants if v.get("type") == "array" and "items" in v]
    if not items:
        return schema
    meta = {k: v for k, v in schema.items() if k not in ("anyOf", "type", "items", "minItems", "maxItems")}
    bare = [{k: v for k, v in var.items() if k not in meta} for var in variants]
    return {"anyOf": [*bare, *items], **meta}


def _spec_schema(schema: dict[str, Any]) -> None:
    """The JSON schema says what the validators accept: `"eps": 0.03` as well as `"eps": [0.03]`, a stage's depth
    `5` as well as `[5]`."""
    props = schema.get("properties", {})
    for axis in SCALAR_AXES:
        if axis in props:
            props[axis] = _or_item(props[axis])
    for axis in STAGE_AXES:
        if axis in props and "items" in props[axis]:
            props[axis]["items"] = _or_item(props[axis]["items"])


class SweepSpec(BaseModel):
    """A sweep: the axes to expand and the training settings shared by every trial."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra=_spec_schema)

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str = ""
    model: str = "wrn"
    depths: list[list[Depth]] = Field(
        [[5], [5], [5]], description=f"per stage: the depth choices, 0 to {MAX_STAGE_DEPTH:,} blocks per stage "
                                     f"(the studies use <= 11), at most {MAX_STAGES} stages")
    widths: list[list[float]] = Field(
        [[10.0], [10.0], [10.0]], description=f"per stage: the width-factor choices, > 0 and at most {MAX_WIDTH:g} "
                                              f"after gamma (the studies use <= 20)")
    gamma: list[Scale] = Field([1.0], description=f"width scaling (w10-10-4 x 2 = w20-20-8), > 0 and <= {MAX_WIDTH:g}")
    method: list[str] = ["sat"]
    lam: list[Lam] | None = Field(None, description=f"None: each method's reference default; 0 to {MAX_LAM:g}")
    eps: list[Number] = [8 / 255]  # pixel units in [0, 1]
    norm: list[Norm] = ["linf"]
    dataset: str = "cifar10"
    n_train: list[NTrain | None] = Field(
        [None], description=f"training images, 10 to {MAX_INT32:,}; None: the whole training split")
    data_fraction: float | None = Field(None, gt=0.0, le=1.0)  # alternative to n_train: a fraction of train
    seeds: list[Seed] = Field([0], description=f"seeds, 0 to {MAX_INT32:,} (the store's 32-bit integers)")
    # groups of axes iterated together instead of crossed; a group names one axis or more
    zip: list[Annotated[list[str], Field(min_length=1)]] = []
    training: dict[str, Any] = {}  # TrialConfig fields shared by all trials (epochs, batch_size, lr, ...)
    constraints: Constraints = Constraints()
    search: SearchConfig | None = None  # None: run every configuration (a grid); see search_spaces.search
    eval: EvalPreset = "fast"  # robust evaluation preset (search_spaces.config.EVAL_PRESETS): fast = PGD-20;
    # standard = PGD-20 + CW-20, then AutoAttack on the front after the sweep; full = + AutoAttack on every trial

    @field_validator(*SCALAR_AXES, mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return None if v is None else _as_list(v)

    @field_validator(*STAGE_AXES, mode="before")
    @classmethod
    def _per_stage(cls, v: Any) -> Any:
        return [_as_list(stage) for stage in v] if isinstance(v, list | tuple) else v

    @field_validator("depths")
    @classmethod
    def _depths(cls, v: list[list[int]]) -> list[list[int]]:
        if not v or any(not stage for stage in v):
            raise ValueError("empty grid: every stage needs at least one depth")
        if len(v) > MAX_STAGES:
            raise ValueError(f"{len(v)} stages; at most {MAX_STAGES}")
        for i, stage in enumerate(v):
            if any(d < 0 for d in stage):
                raise ValueError(f"stage {i + 1} has a negative depth {min(stage)}")
            if max(stage) > MAX_STAGE_DEPTH:
                raise ValueError(f"stage {i + 1} has a depth {max(stage):,} > {MAX_STAGE_DEPTH:,} (the maximum "
                                 f"blocks per stage)")
        return v

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: list[list[float]]) -> list[list[float]]:
        if not v or any(not stage for stage in v):
            raise ValueError("empty grid: every stage needs at least one width")
        for i, stage in enumerate(v):
            if any(w <= 0 for w in stage):
                raise ValueError(f"stage {i + 1} has a width {min(stage)} <= 0")
            if max(stage) > MAX_WIDTH:
                raise ValueError(f"stage {i + 1} has a width {max(stage):g} > {MAX_WIDTH:g} (the maximum width "
                                 f"factor)")
        return v

    @field_validator("gamma")
    @classmethod
    def _gamma(cls, v: list[float]) -> list[float]:
        if not v or any(g <= 0 for g in v):
            raise ValueError("width scales must be > 0 and the list non-empty")
        return v

    @field_validator("eps")
    @classmethod
    def _eps(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("empty grid")
        bad = [e for e in v if not 0.0 <= e <= 1.0]
        if bad:
            raise ValueError(f"eps must lie in [0, 1] (pixel units, 8/255 = 0.0314); got {bad[0]}")
        return v

    @field_validator("lam")
    @classmethod
    def _lam(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (not v or any(x < 0 for x in v)):
            raise ValueError("lambda must be >= 0 and the list non-empty")
        return v

    @field_validator("method")
    @classmethod
    def _method(cls, v: list[str]) -> list[str]:
        unknown = [m for m in v if m not in METHOD_DEFAULTS]
        if not v or unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; known: {known(METHOD_DEFAULTS)}" if v else "empty grid")
        return v

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; known: {known(DATASETS)}")
        return v

    @field_validator("norm", "n_train", "seeds")
    @classmethod
    def _non_empty(cls, v: list[Any]) -> list[Any]:
        if not v:
            raise ValueError("empty grid")
        return v

    @model_validator(mode="after")
    def _shape(self) -> SweepSpec:
        if len(self.depths) != len(self.widths):
            raise ValueError(f"depths has {len(self.depths)} stages but widths has {len(self.widths)}")
        seen: set[str] = set()
        for group in self.zip:
            for axis in group:
                if axis not in AXES:
                    raise ValueError(f"zip: unknown axis {axis!r}; known: {', '.join(AXES)}")
                if axis in seen:
                    raise ValueError(f"zip: axis {axis!r} appears in two groups")
                seen.add(axis)
        return self


def config_hash(cfg: TrialConfig) -> str:
    """Stable identity of a trial config (sorted-key JSON), used to remove duplicates and to key DB rows."""
    dumped = cfg.model_dump(mode="json")
    if dumped.get("eval_preset") == "fast":  # the default: configs stored before presets keep their hash
        del dumped["eval_preset"]
    blob = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _axis_values(spec: SweepSpec) -> dict[str, list[Any]]:
    n_train = spec.n_train
    if spec.data_fraction is not None:
        total = DATASETS[spec.dataset]["n_train"] - int(spec.training.get("val_size", 1000))
        n_train = [max(10, round(spec.data_fraction * total))]
    return {
        "depths": [tuple(d) for d in itertools.product(*spec.depths)],
        "widths": [tuple(w) for w in itertools.product(*spec.widths)],
        "gamma": spec.gamma,
        "method": spec.method,
        "lam": spec.lam if spec.lam is not None else [None],
        "eps": spec.eps,
        "norm": spec.norm,
        "n_train": n_train,
        "seeds": spec.seeds,
    }


def _combinations(spec: SweepSpec) -> list[dict[str, Any]]:
    values = _axis_values(spec)
    groups: list[list[str]] = [list(g) for g in spec.zip]
    grouped = {a for g in groups for a in g}
    groups += [[a] for a in AXES if a not in grouped]
    columns: list[list[dict[str, Any]]] = []
    for group in groups:
        lengths = {a: len(values[a]) for a in group}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{a}={n}" for a, n in lengths.items())
            raise SpecError("zip", f"zipped axes have different lengths ({detail})")
        columns.append([{a: values[a][i] for a in group} for i in range(len(values[group[0]]))])
    combos = []
    for parts in itertools.product(*columns):
        merged: dict[str, Any] = {}
        for p in parts:
            merged.update(p)
        combos.append(merged)
    return combos


def _trial_fields(spec: SweepSpec, combo: dict[str, Any]) -> dict[str, Any]:
    method = combo["method"]
    defaults = METHOD_DEFAULTS[method]
    fields: dict[str, Any] = {k: v for k, v in defaults.items() if k != "train_attack"}
    fields.update(spec.training)
    attack = {**defaults.get("train_attack", {}), **dict(spec.training.get("train_attack", {}))}
    if attack:
        fields["train_attack"] = attack
    fields.update(
        model=spec.model,
        depths=combo["depths"],
        widths=tuple(round(w * combo["gamma"], 6) for w in combo["widths"]),
        method=method,
        eps=0.0 if method == "clean" else combo["eps"],
        norm=combo["norm"],
        dataset=spec.dataset,
        n_train=combo["n_train"],
        seed=combo["seeds"],
    )
    if combo["lam"] is not None:
        fields["lam"] = combo["lam"]
    # the preset's attacks, then any other final attack the training fields name (order kept, no duplicates; an
    # empty list stays empty so that TrialConfig rejects it)
    given = spec.training.get("final_attacks")
    attacks = [*EVAL_PRESETS[spec.eval], *_as_list(given)] if given is None or given else []
    fields.update(final_attacks=tuple(dict.fromkeys(a for a in attacks if a is not None)), eval_preset=spec.eval)
    return fields


def expand(spec: SweepSpec) -> list[TrialConfig]:
    """Every trial config of the spec, in a stable order, duplicates removed. Raises SpecError."""
    out: dict[str, TrialConfig] = {}
    for combo in _combinations(spec):
        fields = _trial_fields(spec, combo)
        try:
            cfg = TrialConfig(**fields)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "training"
            raise SpecError(_spec_field(loc), err["msg"]) from None
        out.setdefault(config_hash(cfg), cfg)
    if not out:
        raise SpecError("spec", "empty grid: the spec expands to no trials")
    return list(out.values())


def _spec_field(loc: str) -> str:
    head = loc.split(".")[0]
    if head in {"depths", "widths", "method", "lam", "eps", "norm", "n_train", "dataset", "model"}:
        return head
    if head == "seed":
        return "seeds"
    return f"training.{loc}"
