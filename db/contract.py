"""The trial-report contract: the result vocabulary as typed classes (architecture.md, "Result fields").

- `EpochReport`: what a trial reports after every epoch (metrics on the validation split, training losses and
  terms of the objective); stored as one `epoch_metrics` row per (trial, epoch).
- `FinalRow`: the full evaluation of one checkpoint (best | last) under one attack on the test set; stored as one
  `final_results` row per (trial, checkpoint, attack).
- `ResultRow`: the flat row every reader sees (API JSON, CSV headers, CLI columns, filters): the trial's identity
  joined with an epoch report or a final row. `RESULT_FIELDS` and the filter types are derived from it.

The trainable builds the first two, the writer (workers.db_writer) stores them, and nothing else names a result
column by hand. Units: accuracies and stability are fractions in [0, 1]; losses in nats; eps in [0, 1] pixel units;
`macs` are multiply-accumulates of one forward pass of one image; `device_seconds` has one meaning per level (an
epoch row: that epoch's training and validation; a final row: that evaluation; a trial: the whole trial).
`_val` names the validation split (per-epoch rows only), `_test` the test set (final rows only).
"""

from __future__ import annotations

import math
import re
import typing
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

Checkpoint = Literal["best", "last"]
CHECKPOINTS: tuple[str, ...] = get_args(Checkpoint)

# ------------------------------------------------------------------------------------------ attack keys

# Canonical keys of evaluation attacks as stored in `final_results.attack`: an iterative attack carries its
# number of steps (pgd20, pgd100, cw20); single-shot or parameter-free ones are their name.
STEPPED_ATTACKS: tuple[str, ...] = ("pgd", "cw", "gama")  # gama: GAMA-PGD (Sriramanan et al. 2020), references
FIXED_ATTACKS: tuple[str, ...] = ("fgsm", "autoattack", "apgd-ce", "apgd-t", "fab", "square",
                                  "cw")  # bare cw: CW-inf whose step count a reference does not state
# the attack-key grammar as one regular expression (also the `pattern` of the API's attack parameters)
ATTACK_KEY_PATTERN = rf"^(?:(?:{'|'.join(STEPPED_ATTACKS)})[1-9][0-9]*|{'|'.join(FIXED_ATTACKS)})$"
_KEY = re.compile(ATTACK_KEY_PATTERN)
DEFAULT_ATTACK = "pgd20"  # the studies' reported attack


def attack_key(name: str, steps: int) -> str:
    """The one mapping from a config's attack name (`pgd`, `cw`, `fgsm`, `autoattack`, ...) and its steps to the
    stored key: `attack_key("pgd", 20) == "pgd20"`, `attack_key("fgsm", 1) == "fgsm"`."""
    if name in STEPPED_ATTACKS:
        if steps < 1:
            raise ValueError(f"attack {name!r}: steps must be >= 1, got {steps}")
        return f"{name}{int(steps)}"
    if name in FIXED_ATTACKS:
        return name
    raise ValueError(f"unknown attack {name!r}; known: {', '.join((*STEPPED_ATTACKS, *FIXED_ATTACKS))}")


def is_attack_key(key: str) -> bool:
    return bool(_KEY.match(key))


def check_attack_key(key: str) -> str:
    if not is_attack_key(key):
        raise ValueError(
            f"{key!r} is not an attack key; keys are pgd<steps> or cw<steps> (e.g. pgd20, cw20) or one of "
            f"{', '.join(FIXED_ATTACKS)}"
        )
    return key


# -------------------------------------------------------------------------------------------- reports


def _finite_or_none(v: Any) -> Any:
    """NaN (an undefined metric) is stored as NULL; numpy/torch scalars become Python floats."""
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


class _Report(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def metric_fields(cls) -> tuple[str, ...]:
        """The stored metric columns (every field but the row key)."""
        return tuple(f for f in cls.model_fields if f not in cls.key_fields())

    @classmethod
    def key_fields(cls) -> tuple[str, ...]:
        raise NotImplementedError


class EpochReport(_Report):
    """One epoch of one trial. Accuracies, stability and `_val` losses are measured on the validation split
    (PGD eval attack), or on the test set under select_on 'test' (the studies' protocol; then the losses are the
    `_test` ones); training losses and the objective's terms are batch-weighted epoch means."""

    epoch: int = Field(ge=1)  # completed epochs (1-based)
    clean_acc: float | None = None  # validation (test under select_on 'test')
    robust_acc: float | None = None  # the same split, the evaluation attack
    stability: float | None = None  # the same split: argmax f(x') == argmax f(x)
    clean_loss_train: float | None = None  # CE on clean training batches (nats)
    adv_loss_train: float | None = None  # CE on the training attack's examples (nats)
    clean_loss_val: float | None = None
    adv_loss_val: float | None = None
    clean_loss_test: float | None = None  # on the test set: only under select_on 'test' (then no _val losses)
    adv_loss_test: float | None = None
    natural_risk: float | None = None  # the objective's natural-risk term
    robust_reg: float | None = None  # the objective's robust-regularisation term
    local_lipschitz: float | None = None  # mean over iterations of max_k ||grad_x CE(x_k)||_1
    lam_t: float | None = None  # lambda_t, batch-weighted mean over the epoch (WAR adapts it; else the fixed lambda)
    lr: float | None = None  # learning rate at the epoch's last batch (per batch of batch_size)
    device_seconds: float | None = None  # this epoch: training plus validation (s)
    lam_trajectory: list[float] | None = None  # WAR: lambda_t of every batch of this epoch

    _floats = field_validator(
        "clean_acc", "robust_acc", "stability", "clean_loss_train", "adv_loss_train", "clean_loss_val",
        "adv_loss_val", "clean_loss_test", "adv_loss_test", "natural_risk", "robust_reg", "local_lipschitz", "lam_t",
        "lr", "device_seconds",
        mode="before",
    )(_finite_or_none)

    @classmethod
    def key_fields(cls) -> tuple[str, ...]:
        return ("epoch",)


class FinalRow(_Report):
    """The evaluation of one checkpoint under one attack on the test set. Counts make the binomial standard
    errors and the identity robust = correct AND stable checkable on every row."""

    checkpoint: Checkpoint
    attack: str  # canonical key (attack_key)
    epoch: int | None = None  # the checkpoint's epoch
    clean_acc: float | None = None
    robust_acc: float | None = None
    stability: float | None = None
    n_total: int | None = Field(None, ge=0)
    n_correct: int | None = Field(None, ge=0)  # argmax f(x) == y
    n_stable: int | None = Field(None, ge=0)  # argmax f(x') == argmax f(x)
    n_robust: int | None = Field(None, ge=0)  # counted robust by the attack
    emp_lipschitz: float | None = None  # mean ||f(x) - f(x')||_1 / ||x - x'||_inf of the logits
    emp_lipschitz_blocks: list[float] | None = None  # the same per residual block, then the logits
    clean_loss_test: float | None = None
    adv_loss_test: float | None = None
    device_seconds: float | None = None  # this evaluation (0 when the last checkpoint is the best one, reused)

    _floats = field_validator(
        "clean_acc", "robust_acc", "stability", "emp_lipschitz", "clean_loss_test", "adv_loss_test",
        "device_seconds", mode="before",
    )(_finite_or_none)

    @field_validator("attack")
    @classmethod
    def _canonical(cls, v: str) -> str:
        return check_attack_key(v)

    @classmethod
    def key_fields(cls) -> tuple[str, ...]:
        return ("checkpoint", "attack")


# ------------------------------------------------------------------------------------------- read rows


class ResultRow(BaseModel):
    """One row as every reader sees it. A field the row's kind lacks is None (an epoch row has no attack, no
    counts and no `_test` losses; a final row has no training losses)."""

    model_config = ConfigDict(extra="forbid")

    sweep: str
    trial: int
    arch: str
    depths: str
    widths: str
    params: int | None = None  # None only for imported references that state none
    macs: int | None = None
    method: str
    lam: float | None = None
    eps: float
    norm: str
    dataset: str
    n_train: int | None = None
    seed: int
    checkpoint: Checkpoint | None = None
    epoch: int | None = None
    attack: str | None = None
    clean_acc: float | None = None
    robust_acc: float | None = None
    stability: float | None = None
    n_total: int | None = None
    n_correct: int | None = None
    n_stable: int | None = None
    n_robust: int | None = None
    emp_lipschitz: float | None = None
    emp_lipschitz_blocks: list[float] | None = None
    clean_loss_train: float | None = None
    adv_loss_train: float | None = None
    clean_loss_val: float | None = None
    adv_loss_val: float | None = None
    clean_loss_test: float | None = None
    adv_loss_test: float | None = None
    natural_risk: float | None = None
    robust_reg: float | None = None
    local_lipschitz: float | None = None
    lam_t: float | None = None
    device_seconds: float | None = None
    status: str
    error: str | None = None


RESULT_FIELDS: tuple[str, ...] = tuple(ResultRow.model_fields)
# A trial's configuration in the vocabulary (what a plan lists and the store keeps per trial).
CONFIG_FIELDS: tuple[str, ...] = (
    "arch", "depths", "widths", "params", "macs", "method", "lam", "eps", "norm", "dataset", "n_train", "seed",
)  # fmt: skip
TRIAL_FIELDS: tuple[str, ...] = ("sweep", "trial", *CONFIG_FIELDS, "status", "error")  # a row's fields from its trial


def _base_type(annotation: Any) -> type:
    """int | None -> int; list[float] | None -> list; Literal[...] | None -> str."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    base = args[0]
    if typing.get_origin(base) is Literal:
        return str
    return typing.get_origin(base) or base


FIELD_TYPES: dict[str, type] = {f: _base_type(info.annotation) for f, info in ResultRow.model_fields.items()}
INT_FIELDS = frozenset(f for f, t in FIELD_TYPES.items() if t is int)
FLOAT_FIELDS = frozenset(f for f, t in FIELD_TYPES.items() if t is float)
STR_FIELDS = frozenset(f for f, t in FIELD_TYPES.items() if t is str)
LIST_FIELDS = frozenset(f for f, t in FIELD_TYPES.items() if t is list)  # shown, not filterable
NUMERIC_FIELDS = INT_FIELDS | FLOAT_FIELDS
SCALAR_FIELDS: tuple[str, ...] = tuple(f for f in RESULT_FIELDS if f not in LIST_FIELDS)  # sortable
FILTER_FIELDS = NUMERIC_FIELDS | STR_FIELDS
# Metrics whose natural direction is "larger is better" (Pareto defaults); every other metric is minimised.
MAXIMIZED = frozenset({"clean_acc", "robust_acc", "stability"})
# Per-epoch extras `trial_curves` adds after the result fields.
EPOCH_EXTRA_FIELDS: tuple[str, ...] = ("lr", "lam_trajectory")

assert set(TRIAL_FIELDS) <= set(RESULT_FIELDS)
assert set(EpochReport.model_fields) - set(EPOCH_EXTRA_FIELDS) <= set(RESULT_FIELDS)
assert set(FinalRow.model_fields) <= set(RESULT_FIELDS)
