"""SQLAlchemy 2.0 models: sweeps -> trials -> (epoch_metrics, final_results).

The schema itself is created only by the Alembic migration (db/migrations/versions); these models must match it
(tests/db/test_migrations.py compares them with Alembic's autogenerate diff). Units: eps in [0, 1] pixel units,
accuracies and stability as fractions in [0, 1], times in seconds, params and macs as counts (macs = multiply-
accumulates of one forward pass of one image). The column meanings are documented once, in db.contract.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.contract import CHECKPOINTS
from db.fields import SWEEP_STATUSES, TRIAL_STATUSES

# The accuracies a Pareto front of (params or macs, accuracy) reads from a covering index of its own.
FRONT_Y: tuple[str, ...] = ("robust_acc", "clean_acc", "stability")

# Deterministic constraint names, so the migration and the models agree on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _in(values: tuple[str, ...], column: str = "status") -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Sweep(Base):
    __tablename__ = "sweeps"
    __table_args__ = (
        CheckConstraint(_in(SWEEP_STATUSES), name="status"),
        Index("uq_sweeps_idempotency_key", "idempotency_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    ray_job_id: Mapped[str | None] = mapped_column(String(200))
    dashboard_url: Mapped[str | None] = mapped_column(String(500))
    code_version: Mapped[str] = mapped_column(String(100))
    n_trials: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)  # why the sweep failed (e.g. its Ray job could not start)
    owner: Mapped[str | None] = mapped_column(String(200), index=True)  # the API token's owner that submitted it
    imported: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # a reference sweep
    source: Mapped[str | None] = mapped_column(Text)  # imported sweeps: where the rows come from (file, paper)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))  # a retried POST finds its sweep (unique)
    launch_claim: Mapped[str | None] = mapped_column(String(64))  # the request launching its job now (db.sweeps)
    launch_lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the claim lapses then

    trials: Mapped[list[Trial]] = relationship(
        back_populates="sweep", cascade="all, delete-orphan", passive_deletes=True, order_by="Trial.idx"
    )

    def __repr__(self) -> str:
        return f"Sweep(id={self.id!r}, name={self.name!r}, status={self.status!r}, n_trials={self.n_trials!r})"


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("sweep_id", "idx"),
        UniqueConstraint("sweep_id", "config_hash"),
        CheckConstraint(_in(TRIAL_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int] = mapped_column(Integer)  # position in the sweep, 0-based
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the full TrialConfig dump
    config_hash: Mapped[str] = mapped_column(String(128))
    arch: Mapped[str] = mapped_column(String(200), index=True)  # e.g. wrn-d5-5-5-w10-10-10
    depths: Mapped[str] = mapped_column(String(100))  # "5-5-5"
    widths: Mapped[str] = mapped_column(String(100))  # "10-10-10"
    params: Mapped[int | None] = mapped_column(BigInteger)  # trainable parameters (None: a reference states none)
    macs: Mapped[int | None] = mapped_column(BigInteger)  # multiply-accumulates of one forward pass of one image
    method: Mapped[str] = mapped_column(String(50), index=True)
    lam: Mapped[float | None] = mapped_column(Float)  # None: an imported reference states none
    eps: Mapped[float] = mapped_column(Float, index=True)  # [0, 1] pixel units
    norm: Mapped[str] = mapped_column(String(16))
    dataset: Mapped[str] = mapped_column(String(100), index=True)  # provenance name, e.g. cifar10-jpeg
    n_train: Mapped[int | None] = mapped_column(Integer)  # None: the full training split
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    device_seconds: Mapped[float | None] = mapped_column(Float)  # the whole trial: training and evaluations
    device: Mapped[str | None] = mapped_column(String(200))  # cpu, or the CUDA device's name
    node: Mapped[str | None] = mapped_column(String(300))  # host name and IP of the node it ran on
    retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # Tune restarts after a failure
    batch_size_used: Mapped[int | None] = mapped_column(Integer)  # training batch size run (halved after an OOM)
    code_version: Mapped[str] = mapped_column(String(100))

    sweep: Mapped[Sweep] = relationship(back_populates="trials")
    epoch_metrics: Mapped[list[EpochMetric]] = relationship(
        back_populates="trial", cascade="all, delete-orphan", passive_deletes=True, order_by="EpochMetric.epoch"
    )
    final_results: Mapped[list[FinalResult]] = relationship(
        back_populates="trial", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"Trial(id={self.id!r}, sweep_id={self.sweep_id!r}, idx={self.idx!r}, status={self.status!r})"


class EpochMetric(Base):
    """One row per (trial, epoch); every metric nullable (a method reports what it has)."""

    __tablename__ = "epoch_metrics"
    __table_args__ = (UniqueConstraint("trial_id", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)  # 0-based or 1-based as the trainer reports; unique per trial
    clean_acc: Mapped[float | None] = mapped_column(Float)  # validation split
    robust_acc: Mapped[float | None] = mapped_column(Float)
    stability: Mapped[float | None] = mapped_column(Float)
    clean_loss_train: Mapped[float | None] = mapped_column(Float)
    adv_loss_train: Mapped[float | None] = mapped_column(Float)
    clean_loss_val: Mapped[float | None] = mapped_column(Float)
    adv_loss_val: Mapped[float | None] = mapped_column(Float)
    clean_loss_test: Mapped[float | None] = mapped_column(Float)  # select_on 'test': per-epoch on the test set
    adv_loss_test: Mapped[float | None] = mapped_column(Float)
    natural_risk: Mapped[float | None] = mapped_column(Float)  # objective's natural-risk term, epoch mean
    robust_reg: Mapped[float | None] = mapped_column(Float)  # objective's robust-regularisation term, epoch mean
    local_lipschitz: Mapped[float | None] = mapped_column(Float)  # mean over iterations of max_k ||grad_x L||_1
    lam_t: Mapped[float | None] = mapped_column(Float)  # batch-weighted epoch mean of lambda_t (fixed unless WAR)
    lr: Mapped[float | None] = mapped_column(Float)  # per batch of batch_size
    device_seconds: Mapped[float | None] = mapped_column(Float)  # this epoch: training and validation
    lam_trajectory: Mapped[list[float] | None] = mapped_column(JSON)  # WAR per-batch lambdas of this epoch

    trial: Mapped[Trial] = relationship(back_populates="epoch_metrics")


class FinalResult(Base):
    """One row per (trial, checkpoint, attack): the full evaluation of the best or the last checkpoint.

    `sweep_id`, `params` and `macs` are copies of the trial's (fixed when the trial is stored; filled on every
    insert: `_copy_trial_fields`, db.results.upsert_final, db.imports), so that a Pareto front of (params, robust
    accuracy) over 100,000 rows reads a covering index (`ix_final_results_front_<y>`, one per accuracy of FRONT_Y)
    in order instead of joining trials."""

    __tablename__ = "final_results"
    __table_args__ = (
        UniqueConstraint("trial_id", "checkpoint", "attack"),
        CheckConstraint(_in(CHECKPOINTS, "checkpoint"), name="checkpoint"),
        *(Index(f"ix_final_results_front_{y}", "sweep_id", "attack", "checkpoint", y, "params", "macs", "n_total",
                "trial_id") for y in FRONT_Y),
    )
    COPIED_FROM_TRIAL = ("sweep_id", "params", "macs")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"), index=True)
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"))  # the trial's
    params: Mapped[int | None] = mapped_column(BigInteger)  # the trial's
    macs: Mapped[int | None] = mapped_column(BigInteger)  # the trial's
    checkpoint: Mapped[str] = mapped_column(String(8))  # best | last
    attack: Mapped[str] = mapped_column(String(50), index=True)  # canonical key: pgd20 | cw20 | fgsm | autoattack
    epoch: Mapped[int | None] = mapped_column(Integer)  # the checkpoint's epoch
    clean_acc: Mapped[float | None] = mapped_column(Float)
    robust_acc: Mapped[float | None] = mapped_column(Float)
    stability: Mapped[float | None] = mapped_column(Float)
    n_total: Mapped[int | None] = mapped_column(Integer)
    n_correct: Mapped[int | None] = mapped_column(Integer)
    n_stable: Mapped[int | None] = mapped_column(Integer)
    n_robust: Mapped[int | None] = mapped_column(Integer)
    emp_lipschitz: Mapped[float | None] = mapped_column(Float)  # mean ||f(x)-f(x')||_1 / ||x-x'||_inf, logits
    emp_lipschitz_blocks: Mapped[list[float] | None] = mapped_column(JSON)  # one per residual block, then logits
    clean_loss_test: Mapped[float | None] = mapped_column(Float)
    adv_loss_test: Mapped[float | None] = mapped_column(Float)
    device_seconds: Mapped[float | None] = mapped_column(Float)  # this evaluation

    trial: Mapped[Trial] = relationship(back_populates="final_results")

    @classmethod
    def copied_from(cls, trial: Any) -> dict[str, Any]:
        """{sweep_id, params, macs} of a trial (an ORM Trial or a row with those attributes): what a bulk insert
        of final rows adds to each (bulk inserts skip `_copy_trial_fields`)."""
        return {c: getattr(trial, c) for c in cls.COPIED_FROM_TRIAL}


@event.listens_for(FinalResult, "before_insert")
def _copy_trial_fields(mapper: Any, connection: Any, target: FinalResult) -> None:
    """ORM inserts (db.transfer) take the trial's sweep, params and macs; Core inserts set them themselves."""
    trial = target.__dict__.get("trial")  # set through the relationship (no lazy load inside a flush)
    if trial is None:
        trial = connection.execute(select(*[getattr(Trial, c) for c in FinalResult.COPIED_FROM_TRIAL])
                                   .where(Trial.id == target.trial_id)).one()
    for col, value in FinalResult.copied_from(trial).items():
        setattr(target, col, value)


TOKEN_SCOPES: tuple[str, ...] = ("read", "write", "admin")


class ApiToken(Base):
    """An API token: only its SHA-256 hash is stored; `prefix` (its first characters) names it in listings."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint(_in(TOKEN_SCOPES, "scope"), name="scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(8))  # read | write | admin
    owner: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebSession(Base):
    """A results-page login: the browser's `robustgrid_session` cookie holds a random id whose SHA-256 hash is
    stored here, never the API token it was exchanged for. It acts as its token (scope, owner) until `expires_at`,
    logout (the row is deleted) or the token's revocation (checked on every lookup, db.web_sessions)."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(128), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


# ------------------------------------------------------------------------- what a result column can hold

INT32_MAX, INT64_MAX = 2**31 - 1, 2**63 - 1


def _column_limits() -> tuple[dict[str, int], dict[str, int]]:
    """({integer column: its largest magnitude}, {string column: its most characters}) over the result tables,
    the narrowest where tables share a name (PostgreSQL's INTEGER is 32 bits, BIGINT 64; SQLite takes more, so
    checking these keeps both backends alike)."""
    ints: dict[str, int] = {}
    chars: dict[str, int] = {}
    for table in (Trial, EpochMetric, FinalResult):
        for col in table.__table__.columns:
            if isinstance(col.type, BigInteger | Integer):  # BigInteger subclasses Integer
                bound = INT64_MAX if isinstance(col.type, BigInteger) else INT32_MAX
                ints[col.name] = min(bound, ints.get(col.name, bound))
            elif isinstance(col.type, String) and not isinstance(col.type, Text) and col.type.length:
                chars[col.name] = min(col.type.length, chars.get(col.name, col.type.length))
    return ints, chars


RESULT_INT_LIMITS, RESULT_STR_LENGTHS = _column_limits()
