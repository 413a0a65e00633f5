"""The typed configuration of one trial: everything a worker needs to train and evaluate one network.

Units: eps and step sizes are in [0, 1] pixel units (8/255 = 0.0313...); lr is per batch of `batch_size`
examples; epochs are passes over the (possibly subsampled) training split. This module imports no torch,
so the API and the planner can validate and expand configs without it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from search_spaces.catalog import EVAL_ATTACKS

Norm = Literal["linf", "l2"]
Start = Literal["uniform", "normal", "none"]  # uniform in the ball | x + 0.001*N(0,1) (TRADES) | x itself
BNMode = Literal["eval", "train"]
Checkpoint = Literal["best", "last"]
EvalPreset = Literal["fast", "standard", "full"]

# Robust evaluation presets (a sweep spec's `eval`): the attacks every trial runs on its best and last checkpoint at
# the end of training, and whether AutoAttack re-attacks the Pareto front after the sweep (workers.posthoc).
# fast: PGD-20, the studies' protocol; standard: + CW-20, and AutoAttack on the front (widened by 2 standard
# errors) once the sweep completes; full: PGD-20 + CW-20 + AutoAttack on every trial.
EVAL_PRESETS: dict[str, tuple[str, ...]] = {"fast": ("pgd",), "standard": ("pgd", "cw"), "full": ("pgd", "cw", "autoattack")}
FRONT_EVAL_PRESETS = frozenset({"standard"})  # presets whose sweep ends with AutoAttack on the front
FRONT_ATTACK = "autoattack"  # the attack those presets run on the front
# Attack keys a post-hoc evaluation of stored checkpoints runs (workers.posthoc): pgd<N> and cw<N> with the trial's
# step rule, and these; fab and square are AutoAttack's FAB-T and Square alone.
POSTHOC_FIXED_ATTACKS = ("fgsm", "autoattack", "apgd-ce", "apgd-t", "fab", "square")

# Upper bounds of a spec's numbers: generous for any real study, small enough that a plan is counted in
# microseconds (search_spaces.counting) and every stored value fits its database column. Floats must be finite.
MAX_STAGE_DEPTH = 1_000  # blocks per stage (the studies use <= 11; ResNet-1001 has 111 per stage)
MAX_WIDTH = 100.0  # width factor per stage after gamma (channels 16/32/64 x W; the studies use <= 20)
MAX_STAGES = 16  # stages of a network (the registered models have 3 or 4)
MAX_INT32 = 2**31 - 1  # seeds, n_train, val_size, n_test: the store's 32-bit INTEGER columns
MAX_EPOCHS = 10_000  # epochs of one trial (the studies train <= 200)
MAX_BATCH = 65_536  # examples per training or evaluation batch
MAX_ATTACK_STEPS = 10_000  # iterations of one attack (PGD-1000 is the longest evaluation in common use)
MAX_LAM = 1_000.0  # robust-regularisation weight (TRADES' beta is <= 24 in the studies)
MAX_FACTOR = 1_000.0  # other multipliers and rates: lr, relative steps, CW's kappa, WAR's zeta and step


def check_posthoc_attack(key: str) -> str:
    """`key` when a post-hoc evaluation can run it (pgd<N>, cw<N>, POSTHOC_FIXED_ATTACKS), else ValueError naming
    the field `attack` and the keys it takes."""
    name = key.rstrip("0123456789")
    if (name in ("pgd", "cw") and key[len(name):].isdigit() and int(key[len(name):]) >= 1) or \
            key in POSTHOC_FIXED_ATTACKS:
        return key
    raise ValueError(f"attack: {key!r} is not an attack a post-hoc evaluation runs; keys are pgd<steps>, "
                     f"cw<steps> (e.g. pgd100, cw20) or one of {', '.join(POSTHOC_FIXED_ATTACKS)}")


class AttackConfig(BaseModel):
    """One attack's settings. The step is absolute (`step_size`, pixel units) or relative to eps (`step_rel`);
    absolute wins when both are set. Neither: the reference rule of the norm, eps/10 (L-inf) or 2.5 eps / steps
    (L2), which is also what a config stored before relative steps meant by `step_size: null`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = "pgd"  # registry name in workers.attacks
    steps: int = Field(10, ge=1, le=MAX_ATTACK_STEPS)  # iterations
    step_size: float | None = Field(None, ge=0.0, le=1.0)  # pixel units per step; wins over step_rel
    step_rel: float | None = Field(None, gt=0.0, le=MAX_FACTOR)  # step as a multiple of eps (0.25: eps/4)
    step_rel_l2: float | None = Field(None, gt=0.0, le=MAX_FACTOR)  # multiple of eps used instead of step_rel when norm is l2
    start: Start = "uniform"
    kappa: float = Field(50.0, ge=0.0, le=MAX_FACTOR)  # CW margin, logits units (cw only; the reference's 50)

    def resolved_step_size(self, eps: float, norm: str) -> float:
        """Pixel units per step for radius eps (pixel units) under `norm` ('linf' | 'l2')."""
        if self.step_size is not None:
            return self.step_size
        rel = self.step_rel_l2 if norm == "l2" and self.step_rel_l2 is not None else self.step_rel
        if rel is not None:
            return rel * eps
        return reference_step_size(eps, norm, self.steps)


def reference_step_size(eps: float, norm: str, steps: int) -> float:
    """The default step when none is configured: eps/10 for L-inf (science.md's evaluation attack), 2.5 eps / steps
    for L2 (Madry et al.'s L2 PGD)."""
    return 2.5 * eps / steps if norm == "l2" else eps / 10


class ScheduleConfig(BaseModel):
    """Learning-rate schedule. `piecewise`: multiply by `gamma` at each milestone (fractions of the epochs when
    <= 1, epoch numbers otherwise); `cosine`: cosine to 0 over all epochs; `halve_after`: x0.5 every epoch
    after epoch `halve_after`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["piecewise", "cosine", "halve_after", "constant"] = "piecewise"
    milestones: tuple[float, ...] = (0.75, 0.9)  # fractions of epochs (<= 1) or epoch numbers (> 1)
    gamma: float = Field(0.1, gt=0.0, le=MAX_FACTOR)  # lr factor per milestone
    halve_after: int = Field(75, ge=0, le=MAX_EPOCHS)  # epoch after which the lr halves every epoch


class TrialConfig(BaseModel):
    """Everything one trial trains and evaluates. Frozen and JSON round-trippable (stored with the trial). Numbers are
    bounded (MAX_* above) and floats finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # architecture
    model: str = "wrn"  # registry name in workers.models
    depths: tuple[int, ...] = (5, 5, 5)  # residual blocks per stage (D1, D2, D3); 0 removes a stage
    widths: tuple[float, ...] = (10.0, 10.0, 10.0)  # width factor per stage (channels 16*W1, 32*W2, 64*W3)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    wrn_shortcut: Literal["raw", "preact"] = "raw"  # wrn: input of an equal-channel stride-2 block's 1x1 shortcut
    # (raw: the block's input, as RobustWRN's code; preact: its first BN-ReLU output)

    # training method and threat model
    method: str = "sat"  # registry name in workers.methods
    lam: float = Field(1.0, ge=0.0, le=MAX_LAM)  # robust-regularisation weight (TRADES' beta)
    zeta: float | None = Field(None, gt=0.0, le=MAX_FACTOR)  # WAR's target ratio natural risk / robust regulariser
    war_alpha: float = Field(0.1, gt=0.0, le=MAX_FACTOR)  # WAR's lambda step
    eps: float = Field(8 / 255, ge=0.0, le=1.0)  # attack radius, pixel units
    norm: Norm = "linf"
    train_attack: AttackConfig = AttackConfig(step_rel=0.25, step_rel_l2=0.25)  # PGD-10, step eps/4 (2/255 at
    # 8/255; L2: 2.5 eps / steps); a train_attack given without a step gets the same rule (_train_step below)
    eval_attack: AttackConfig = AttackConfig(steps=20)  # PGD-20, step eps/10 (L2: 2.5 eps / 20)
    bn_mode_attack: BNMode = "eval"  # BN mode while generating training attacks

    # data
    dataset: str = "cifar10"  # cifar10 | cifar100 | svhn | imagefolder | synthetic
    dataset_label: str | None = None  # provenance name written with results (e.g. cifar10-jpeg); None: dataset
    n_train: int | None = Field(None, ge=10, le=MAX_INT32)  # class-balanced seeded subset of train; None: all
    val_size: int = Field(1000, ge=0, le=MAX_INT32)  # held out from train (fixed seed) for per-epoch evaluation
    n_test: int | None = Field(None, ge=1, le=MAX_INT32)  # first n test images for the final evaluation; None: all
    seed: int = Field(0, ge=0, le=MAX_INT32)

    # optimisation
    epochs: int = Field(100, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(128, ge=1, le=MAX_BATCH)
    lr: float = Field(0.1, gt=0.0, le=MAX_FACTOR)  # per batch of batch_size
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(2e-4, ge=0.0, le=1.0)
    grad_clip: float | None = Field(5.0, gt=0.0)  # max global grad norm; None: off
    schedule: ScheduleConfig = ScheduleConfig()
    best_from: float = Field(0.5, ge=0.0, le=1.0)  # best checkpoint chosen from this fraction of epochs on
    select_on: Literal["val", "test", "last"] = "val"  # best checkpoint by per-epoch robust accuracy on the
    # validation split (val_size > 0), on the test set (the studies' protocol), or none: best = last

    # evaluation and execution
    final_attacks: tuple[str, ...] = ("pgd",)  # run on the best and the last checkpoint: pgd | fgsm | cw | autoattack
    eval_preset: EvalPreset = "fast"  # the sweep's `eval` preset (provenance; the expansion set final_attacks from it)
    eval_batch_size: int = Field(512, ge=1, le=MAX_BATCH)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA (BN in fp32), fp32 on CPU

    # fine-tuning (eps* fast approximation): start from another run's weights instead of the seeded init.
    # 'trial:<id>' = that trial's last checkpoint in the Ray storage path; or a path to a state file / checkpoint dir
    init_from: str | None = Field(None, min_length=1)

    @field_validator("depths")
    @classmethod
    def _depths(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or len(v) > MAX_STAGES:
            raise ValueError(f"depths must have 1 to {MAX_STAGES} stages, got {len(v)}")
        if any(not 0 <= d <= MAX_STAGE_DEPTH for d in v):
            raise ValueError(f"depths must lie in [0, {MAX_STAGE_DEPTH:,}] blocks per stage, got {list(v)}")
        if all(d == 0 for d in v):
            raise ValueError("at least one stage must have depth > 0")
        return v

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v:
            raise ValueError("widths must not be empty")
        if any(not 0 < w <= MAX_WIDTH for w in v):
            raise ValueError(f"widths must lie in (0, {MAX_WIDTH:g}] (width factors after gamma), got {list(v)}")
        return v

    @field_validator("final_attacks")
    @classmethod
    def _final_attacks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [a for a in v if a not in EVAL_ATTACKS]
        if not v or unknown:
            raise ValueError(f"unknown attack {unknown[0]!r}; known: {', '.join(EVAL_ATTACKS)}" if v else "empty")
        return v

    @field_validator("train_attack")
    @classmethod
    def _train_step(cls, v: AttackConfig) -> AttackConfig:
        """Training attacks without a step: eps/4 (L-inf, science.md) and 2.5 eps / steps (L2), written out."""
        if v.step_size is None and v.step_rel is None:
            return v.model_copy(update={"step_rel": 0.25, "step_rel_l2": v.step_rel_l2 or 2.5 / v.steps})
        return v

    @field_validator("init_from")
    @classmethod
    def _init_from(cls, v: str | None) -> str | None:
        trial_id = None if v is None or not v.startswith("trial:") else v.removeprefix("trial:")
        if trial_id is not None and not (trial_id.isascii() and trial_id.isdigit() and len(trial_id) <= 18):
            # ASCII digits that fit a database id (18 digits < 2**63): `isdigit` alone takes "³", which int refuses
            raise ValueError(f"expected 'trial:<id>' with a numeric id or a path, got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TrialConfig:
        if len(self.depths) != len(self.widths):
            raise ValueError(f"depths ({len(self.depths)} stages) and widths ({len(self.widths)}) differ in length")
        if self.method.startswith("war_") and self.zeta is None:
            raise _field_error(("zeta",), None, f"{self.method} needs zeta > 0 (WAR's target ratio)")
        if self.val_size == 0 and self.select_on == "val":
            raise _field_error(("val_size",), 0, "0 leaves no validation split to select the best checkpoint on "
                               "(select_on 'val'): set val_size > 0, or select_on 'test' (the studies' protocol) "
                               "or 'last'")
        bad = schedule_error(self.schedule, self.epochs)
        if bad is not None:
            raise _field_error(("schedule", "milestones"), list(self.schedule.milestones), bad)
        return self

    @property
    def arch(self) -> str:
        """Stable key such as `wrn-d5-5-5-w10-10-10`."""
        return arch_key(self.model, self.depths, self.widths)

    @property
    def provenance_dataset(self) -> str:
        return self.dataset_label or self.dataset


def milestone_epochs(schedule: ScheduleConfig, epochs: int) -> list[float]:
    """Milestones as epoch numbers: fractions of `epochs` when all are <= 1, epoch numbers otherwise."""
    ms = schedule.milestones
    return [m * epochs for m in ms] if all(m <= 1 for m in ms) else [float(m) for m in ms]


def schedule_error(schedule: ScheduleConfig, epochs: int) -> str | None:
    """Why a piecewise schedule does not fit `epochs` (a milestone outside (0, epochs) would never, or always,
    apply), else None. The rule of workers.optim.validate_schedule, without torch."""
    if schedule.kind != "piecewise":
        return None
    for m, e in zip(schedule.milestones, milestone_epochs(schedule, epochs), strict=True):
        if not 0 < e < epochs:
            return f"{m:g} is epoch {e:g}, outside (0, {epochs}) for {epochs} epochs"
    return None


def _field_error(loc: tuple[str, ...], value: object, reason: str) -> ValidationError:
    """A model-level check reported at the field it is about (pydantic keeps `loc`), so SpecError names it."""
    detail = InitErrorDetails(type="value_error", loc=loc, input=value, ctx={"error": ValueError(reason)})
    return ValidationError.from_exception_data("TrialConfig", [detail])


def fmt_num(w: float) -> str:
    """10.0 -> '10', 2.5 -> '2.5' (keys and CSV columns stay short and stable)."""
    return str(int(w)) if float(w).is_integer() else f"{w:g}"


def arch_key(model: str, depths: tuple[int, ...], widths: tuple[float, ...]) -> str:
    return f"{model}-d{join_nums(depths)}-w{join_nums(widths)}"


def join_nums(xs: tuple[float, ...] | tuple[int, ...]) -> str:
    return "-".join(fmt_num(x) for x in xs)
