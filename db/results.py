"""Result rows: idempotent writes (the driver's callback replays them after a crash) and flat reads in the
result-field vocabulary of `db.fields.RESULT_FIELDS`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import JSON, BigInteger, ColumnElement, Float, Integer, Select, false, func, or_, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.fields import CHECKPOINTS, EPOCH_EXTRA_FIELDS, EPOCH_METRIC_KEYS, FINAL_METRIC_KEYS, RESULT_FIELDS
from db.models import Base, EpochMetric, FinalResult, Sweep, Trial

FLOAT_TOLERANCE = 1e-9  # relative; equality filters on lam and eps match within it

# --------------------------------------------------------------------------------------------------- writes


def _coerce(table: type[Base], key: str, value: Any) -> Any:
    """numpy/torch scalars and arrays -> plain Python values for the column's type."""
    if value is None:
        return None
    col_type = table.__table__.c[key].type
    if isinstance(col_type, JSON):
        return value.tolist() if hasattr(value, "tolist") else value
    if isinstance(col_type, Float):
        return float(value)
    if isinstance(col_type, (Integer, BigInteger)):
        return int(value)
    return value


def _upsert(
    session: Session, table: type[Base], key: dict[str, Any], metrics: Mapping[str, Any], allowed: tuple[str, ...]
) -> None:
    for k in metrics:
        if k not in allowed:
            raise ValueError(f"unknown metric {k!r} for {table.__tablename__}; allowed: {list(allowed)}")
    values = {**key, **{k: _coerce(table, k, v) for k, v in metrics.items()}}
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        stmt: Any = sqlite.insert(table).values(values)
    elif dialect == "postgresql":
        stmt = postgresql.insert(table).values(values)
    else:
        raise NotImplementedError(f"upsert is implemented for sqlite and postgresql, not {dialect!r}")
    index_elements = list(key)
    if metrics:
        stmt = stmt.on_conflict_do_update(
            index_elements=index_elements, set_={k: stmt.excluded[k] for k in metrics}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=index_elements)
    session.execute(stmt)


def upsert_epoch(session: Session, *, trial_id: int, epoch: int, metrics: Mapping[str, Any]) -> None:
    """Insert or update the (trial_id, epoch) row. Only the keys given are written: a replay overwrites them with
    the new values and leaves the others as they were. Keys: `db.fields.EPOCH_METRIC_KEYS` (ValueError otherwise)."""
    _upsert(session, EpochMetric, {"trial_id": int(trial_id), "epoch": int(epoch)}, metrics, EPOCH_METRIC_KEYS)


def upsert_final(
    session: Session, *, trial_id: int, checkpoint: str, attack: str, metrics: Mapping[str, Any]
) -> None:
    """Insert or update the (trial_id, checkpoint, attack) row, like `upsert_epoch`. `checkpoint` is best|last;
    keys: `db.fields.FINAL_METRIC_KEYS` (incl. `epoch`, the checkpoint's epoch)."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {list(CHECKPOINTS)}, got {checkpoint!r}")
    key = {"trial_id": int(trial_id), "checkpoint": checkpoint, "attack": str(attack)}
    _upsert(session, FinalResult, key, metrics, FINAL_METRIC_KEYS)


# ---------------------------------------------------------------------------------------------------- reads

_TRIAL_FIELDS: dict[str, Any] = {
    "sweep": Sweep.name, "trial": Trial.id, "arch": Trial.arch, "depths": Trial.depths, "widths": Trial.widths,
    "params": Trial.params, "flops": Trial.flops, "method": Trial.method, "lam": Trial.lam, "eps": Trial.eps,
    "norm": Trial.norm, "dataset": Trial.dataset, "n_train": Trial.n_train, "seed": Trial.seed,
    "status": Trial.status, "error": Trial.error,
}  # fmt: skip

# field -> SQL expression per kind; a field missing here is None for that kind.
_COLUMNS: dict[str, dict[str, Any]] = {
    "final": {
        **_TRIAL_FIELDS,
        **{f: getattr(FinalResult, f) for f in ("checkpoint", "epoch", "clean_acc", "robust_acc", "stability",
                                                "emp_lipschitz", "clean_loss_test", "adv_loss_test", "attack")},
        # the final row's own GPU-seconds, else the trial's
        "gpu_seconds": func.coalesce(FinalResult.gpu_seconds, Trial.gpu_seconds),
    },
    "epoch": {
        **_TRIAL_FIELDS,
        **{f: getattr(EpochMetric, f) for f in ("epoch", "clean_acc", "robust_acc", "stability", "clean_loss_train",
                                                "clean_loss_test", "adv_loss_train", "adv_loss_test", "natural_risk",
                                                "robust_reg", "local_lipschitz", "lam_t")},
        "gpu_seconds": Trial.gpu_seconds,
    },
}  # fmt: skip

_INT_FIELDS = frozenset({"trial", "params", "flops", "n_train", "seed", "epoch"})
_FLOAT_FIELDS = frozenset(
    {"lam", "eps", "clean_acc", "robust_acc", "stability", "emp_lipschitz", "clean_loss_train", "clean_loss_test",
     "adv_loss_train", "adv_loss_test", "natural_risk", "robust_reg", "local_lipschitz", "lam_t", "gpu_seconds"}
)  # fmt: skip


def _typed(field: str, value: Any) -> Any:
    """Filter values may arrive as strings (query parameters): convert to the field's type."""
    if value is None:
        return None
    try:
        if field in _INT_FIELDS:
            return int(value)
        if field in _FLOAT_FIELDS:
            return float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"filter {field!r}: bad value {value!r}") from e
    return str(value)


def _equals(field: str, expr: Any, value: Any) -> ColumnElement[bool]:
    if expr is None:  # a field this kind lacks is None in every row
        return true() if value is None else false()
    if value is None:
        return expr.is_(None)
    if field in ("lam", "eps"):
        tol = FLOAT_TOLERANCE * max(1.0, abs(value))
        return expr.between(value - tol, value + tol)
    return expr == value


def _sweep_match(value: Any) -> ColumnElement[bool]:
    conds = [Sweep.name == str(value)]
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        conds.append(Sweep.id == int(value))
    return or_(*conds)


def _condition(field: str, expr: Any, value: Any) -> ColumnElement[bool]:
    values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    if field == "sweep":
        return or_(*[_sweep_match(v) for v in values]) if values else false()
    return or_(*[_equals(field, expr, _typed(field, v)) for v in values]) if values else false()


def _select(kind: str, filters: Mapping[str, Any]) -> tuple[Select[Any], list[str]]:
    if kind not in _COLUMNS:
        raise ValueError(f"kind must be 'final' or 'epoch', got {kind!r}")
    cols = _COLUMNS[kind]
    table: Any = FinalResult if kind == "final" else EpochMetric
    names = [f for f in RESULT_FIELDS if f in cols]
    stmt = select(*[cols[f].label(f) for f in names]).select_from(table).join(Trial, table.trial_id == Trial.id)
    stmt = stmt.join(Sweep, Trial.sweep_id == Sweep.id)
    for field, value in filters.items():
        if field == "sweep_ids":
            stmt = stmt.where(Sweep.id.in_([int(v) for v in value]))
        elif field in RESULT_FIELDS:
            stmt = stmt.where(_condition(field, cols.get(field), value))
        else:
            raise ValueError(f"unknown filter field {field!r}; allowed: {[*RESULT_FIELDS, 'sweep_ids']}")
    order = [Sweep.id, Trial.idx, table.epoch] if kind == "epoch" else [Sweep.id, Trial.idx, table.checkpoint,
                                                                         table.attack]  # fmt: skip
    return stmt.order_by(*order), names


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def query_results(session: Session, *, filters: Mapping[str, Any] | None = None, kind: str = "final") -> list[dict]:
    """Rows of final results (one per trial, checkpoint, attack) or per-epoch metrics (one per trial, epoch), each
    a dict with exactly the keys of RESULT_FIELDS in that order (fields the kind lacks are None). `filters`:
    any result field by equality (a list/tuple/set means IN; None means IS NULL; `sweep` matches a name or a
    numeric id; lam and eps match within a 1e-9 relative tolerance) and `sweep_ids` (list of ints).
    Unknown filter field -> ValueError naming it."""
    stmt, names = _select(kind, filters or {})
    out = []
    for row in session.execute(stmt).mappings():
        out.append({f: (_clean(row[f]) if f in names else None) for f in RESULT_FIELDS})
    return out


def trial_curves(session: Session, *, trial_id: int) -> list[dict]:
    """Per-epoch rows of one trial ordered by epoch: RESULT_FIELDS, then EPOCH_EXTRA_FIELDS (lr, seconds,
    lam_trajectory)."""
    rows = query_results(session, filters={"trial": int(trial_id)}, kind="epoch")
    extras = session.execute(
        select(EpochMetric.epoch, *[getattr(EpochMetric, f) for f in EPOCH_EXTRA_FIELDS])
        .where(EpochMetric.trial_id == int(trial_id))
        .order_by(EpochMetric.epoch)
    ).all()
    by_epoch = {e[0]: e[1:] for e in extras}
    for row in rows:
        row.update(zip(EPOCH_EXTRA_FIELDS, by_epoch[row["epoch"]], strict=True))
    return rows
