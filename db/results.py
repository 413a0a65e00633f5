"""Result rows: idempotent writes of the typed reports of `db.contract` (the driver's callback replays them after a
crash) and flat reads in the result vocabulary (`db.contract.ResultRow`)."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, false, func, not_, or_, select, true, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db.contract import (
    EPOCH_EXTRA_FIELDS,
    FLOAT_FIELDS,
    INT_FIELDS,
    LIST_FIELDS,
    RESULT_FIELDS,
    EpochReport,
    FinalRow,
    check_attack_key,
)
from db.fields import fits_int64, id_in_text
from db.models import Base, EpochMetric, FinalResult, Sweep, Trial
from db.stats import NOISE_SIGMAS

FLOAT_TOLERANCE = 1e-9  # relative: a float filter given as a number (not as written text) matches within it


@dataclass(frozen=True)
class Approx:
    """A float filter value with the tolerance it matches within (e.g. `0.0314` as written: +-0.00005)."""

    value: float
    tol: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.value) or not self.tol >= 0:
            raise ValueError(f"bad approximate value {self.value!r} +- {self.tol!r}")


class NoMatch(ValueError):
    """A filter on a configuration axis (eps, lam) matched no row; `reason` lists the values present."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


# --------------------------------------------------------------------------------------------------- writes


def _upsert(session: Session, table: type[Base], key: dict[str, Any], values: dict[str, Any],
            on_insert: dict[str, Any] | None = None) -> None:
    """Insert key + values (+ on_insert: columns a new row takes and an update leaves alone), or update values."""
    dialect = session.get_bind().dialect.name
    row = {**key, **values, **(on_insert or {})}
    if dialect == "sqlite":
        stmt: Any = sqlite.insert(table).values(row)
    elif dialect == "postgresql":
        stmt = postgresql.insert(table).values(row)
    else:
        raise NotImplementedError(f"upsert is implemented for sqlite and postgresql, not {dialect!r}")
    if values:
        stmt = stmt.on_conflict_do_update(index_elements=list(key), set_={k: stmt.excluded[k] for k in values})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(key))
    session.execute(stmt)


def _set_metrics(report: EpochReport | FinalRow) -> dict[str, Any]:
    """The metrics the report sets (a field left unset is not written: a replay of a partial report keeps the
    stored value)."""
    data = report.model_dump()
    return {k: data[k] for k in report.model_fields_set if k in report.metric_fields()}


def upsert_epoch(session: Session, *, trial_id: int, report: EpochReport) -> None:
    """Insert or update the (trial_id, epoch) row with the report's metrics. A replay overwrites the fields it
    sets and leaves the others as they were."""
    _upsert(session, EpochMetric, {"trial_id": int(trial_id), "epoch": report.epoch}, _set_metrics(report))


def upsert_final(session: Session, *, trial_id: int, row: FinalRow) -> None:
    """Insert or update the (trial_id, checkpoint, attack) row, like `upsert_epoch`. A new row takes the trial's
    sweep, params and macs (FinalResult.COPIED_FROM_TRIAL); an unknown trial raises LookupError."""
    key = {"trial_id": int(trial_id), "checkpoint": row.checkpoint, "attack": row.attack}
    trial = session.execute(select(*[getattr(Trial, c) for c in FinalResult.COPIED_FROM_TRIAL])
                            .where(Trial.id == int(trial_id))).one_or_none()
    if trial is None:
        raise LookupError(f"trial: no trial with id {trial_id}")
    _upsert(session, FinalResult, key, _set_metrics(row), FinalResult.copied_from(trial))


# ---------------------------------------------------------------------------------------------------- reads

_FROM_TRIAL: dict[str, Any] = {
    "sweep": Sweep.name, "trial": Trial.id, "arch": Trial.arch, "depths": Trial.depths, "widths": Trial.widths,
    "params": Trial.params, "macs": Trial.macs, "method": Trial.method, "lam": Trial.lam, "eps": Trial.eps,
    "norm": Trial.norm, "dataset": Trial.dataset, "n_train": Trial.n_train, "seed": Trial.seed,
    "status": Trial.status, "error": Trial.error,
}  # fmt: skip

# field -> SQL expression per kind: the trial's fields, then the report's own; a field missing is None for that kind.
_COLUMNS: dict[str, dict[str, Any]] = {
    # a final row carries its trial's id, params and macs (and sweep id): reading only those joins no trial
    "final": {**_FROM_TRIAL, "trial": FinalResult.trial_id, "params": FinalResult.params, "macs": FinalResult.macs,
              **{f: getattr(FinalResult, f) for f in FinalRow.model_fields}},
    "epoch": {**_FROM_TRIAL, **{f: getattr(EpochMetric, f) for f in EpochReport.model_fields
                                if f not in EPOCH_EXTRA_FIELDS}},
}
assert all(set(cols) <= set(RESULT_FIELDS) for cols in _COLUMNS.values())


def _typed(field: str, value: Any) -> Any:
    """A filter value as the field's type (Approx passes through for floats); ValueError naming the field for a
    value the column cannot hold (an integer outside int64, a float that is not finite)."""
    if value is None or isinstance(value, Approx):
        return value
    if field == "attack":
        return check_attack_key(str(value))
    if field not in INT_FIELDS | FLOAT_FIELDS:
        return str(value)
    try:
        number = int(value) if field in INT_FIELDS else float(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"filter {field!r}: bad value {value!r}") from e
    if isinstance(number, int) and not fits_int64(number):
        raise ValueError(f"filter {field!r}: {value!r} is outside the database's 64-bit integer range")
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"filter {field!r}: {value!r} is not a finite number")
    return number


def _equals(field: str, expr: Any, value: Any) -> ColumnElement[bool]:
    if expr is None:  # a field this kind lacks is None in every row
        return true() if value is None else false()
    if value is None:
        return expr.is_(None)
    if field in FLOAT_FIELDS:
        approx = value if isinstance(value, Approx) else Approx(value, FLOAT_TOLERANCE * max(1.0, abs(value)))
        return expr.between(approx.value - approx.tol, approx.value + approx.tol)
    return expr == value


def _sweep_match(value: Any) -> ColumnElement[bool]:
    conds = [Sweep.name == str(value)]
    sweep_id = value if isinstance(value, int) and fits_int64(value) else id_in_text(str(value))
    if sweep_id is not None:
        conds.append(Sweep.id == sweep_id)
    return or_(*conds)


def _condition(field: str, expr: Any, value: Any) -> ColumnElement[bool]:
    values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    if field == "sweep":
        return or_(*[_sweep_match(v) for v in values]) if values else false()
    if not values:
        return false()
    typed = [_typed(field, v) for v in values]
    if expr is not None and len(typed) > 1 and field not in FLOAT_FIELDS and None not in typed:
        return expr.in_(typed)  # type: ignore[no-any-return]  # one IN: an index lookup per value
    return or_(*[_equals(field, expr, v) for v in typed])


def _base(kind: str) -> tuple[dict[str, Any], Any]:
    if kind not in _COLUMNS:
        raise ValueError(f"kind must be 'final' or 'epoch', got {kind!r}")
    return _COLUMNS[kind], (FinalResult if kind == "final" else EpochMetric)


RANGE_OPS: dict[str, str] = {"gte": "__ge__", "gt": "__gt__", "lte": "__le__", "lt": "__lt__"}


def split_range(key: str) -> tuple[str, str | None]:
    """`robust_acc__gte` -> ("robust_acc", "gte"); `arch` -> ("arch", None)."""
    field, sep, op = key.rpartition("__")
    if sep and op in RANGE_OPS and field in RESULT_FIELDS:
        return field, op
    return key, None


def _range(field: str, op: str, expr: Any, value: Any) -> ColumnElement[bool]:
    if field not in INT_FIELDS | FLOAT_FIELDS:
        raise ValueError(f"filter {field}__{op}: ranges apply to numeric fields only")
    if isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"filter {field}__{op}: a range takes one value, got {list(value)}")
    bound = value.value if isinstance(value, Approx) else _typed(field, value)
    if bound is None:
        raise ValueError(f"filter {field}__{op}: a range needs a number")
    if expr is None:  # the kind lacks the field: None is in no range
        return false()
    return getattr(expr, RANGE_OPS[op])(bound)  # type: ignore[no-any-return]


def _where(stmt: Select[Any], kind: str, filters: Mapping[str, Any], fields: Collection[str]) -> Select[Any]:
    """`stmt` (a select of the result `fields`) over the kind's table, filtered. A final-row query whose fields and
    filters name no trial column joins no trial (its sweep through final_results.sweep_id): the Pareto front's
    index-only path."""
    cols, table = _base(kind)
    named = {split_range(k)[0] for k in filters} | set(fields)
    models = {getattr(cols.get(f), "class_", None) for f in named}
    stmt = _filtered(stmt, cols, filters, table.sweep_id if kind == "final" else Sweep.id)
    if kind == "epoch" or Trial in models:
        return stmt.select_from(table).join(Trial, table.trial_id == Trial.id).join(Sweep, Trial.sweep_id == Sweep.id)
    stmt = stmt.select_from(table)
    return stmt.join(Sweep, table.sweep_id == Sweep.id) if Sweep in models else stmt


def _filtered(stmt: Select[Any], cols: dict[str, Any], filters: Mapping[str, Any], sweep_id: Any) -> Select[Any]:
    for key, value in filters.items():
        field, op = split_range(key)
        if op is not None:
            stmt = stmt.where(_range(field, op, cols.get(field), value))
        elif field == "sweep_ids":
            stmt = stmt.where(sweep_id.in_([int(v) for v in value]))
        elif field in LIST_FIELDS:
            raise ValueError(f"filter {field!r}: a list-valued field cannot be filtered on")
        elif field in RESULT_FIELDS:
            stmt = stmt.where(_condition(field, cols.get(field), value))
        else:
            raise ValueError(f"unknown filter field {field!r}; allowed: {[*RESULT_FIELDS, 'sweep_ids']} (ranges: "
                             f"FIELD__gte, __gt, __lte, __lt)")
    return stmt


def _select(kind: str, filters: Mapping[str, Any], first: tuple[Any, ...] = ()) -> tuple[Select[Any], list[str]]:
    """The rows' statement, ordered by `first` (sort keys) and then the default order."""
    cols, table = _base(kind)
    names = [f for f in RESULT_FIELDS if f in cols]
    stmt = _where(select(*[cols[f].label(f) for f in names]), kind, filters, names)
    order = [Sweep.id, Trial.idx, table.epoch] if kind == "epoch" else [Sweep.id, Trial.idx, table.checkpoint,
                                                                         table.attack]  # fmt: skip
    return stmt.order_by(*first, *order), names


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


AXES_EXPLAINED = ("eps", "lam", "attack")  # fields whose empty matches list the values present


def query_results(session: Session, *, filters: Mapping[str, Any] | None = None, kind: str = "final",
                  explain_empty: bool = False) -> list[dict]:
    """Rows of final results (one per trial, checkpoint, attack) or per-epoch metrics (one per trial, epoch), each
    a dict with exactly the keys of RESULT_FIELDS in that order (fields the kind lacks are None). `filters`:
    any scalar result field by equality (a list/tuple/set means IN; None means IS NULL; `sweep` matches a name or
    a numeric id; a float given as a number matches within a 1e-9 relative tolerance, an `Approx` within its own;
    `attack` takes canonical keys only) and `sweep_ids` (list of ints). Unknown filter field -> ValueError naming
    it. With `explain_empty`, a filter on eps, lam or attack that leaves no row, where the other filters alone
    would match rows, raises `NoMatch` listing the values present there."""
    filters = dict(filters or {})
    stmt, names = _select(kind, filters)
    out = [{f: (_clean(row[f]) if f in names else None) for f in RESULT_FIELDS}
           for row in session.execute(stmt).mappings()]
    if not out and explain_empty:
        _explain(session, kind, filters)
    return out


def query_columns(session: Session, *, fields: list[str], filters: Mapping[str, Any] | None = None,
                  kind: str = "final", explain_empty: bool = False) -> dict[str, list[Any]]:
    """Only `fields` of the matching rows, column by column ({field: [values]} in the default row order): what a
    computation over many rows (a Pareto front of 100,000 rows) reads instead of whole rows."""
    filters = dict(filters or {})
    cols, table = _base(kind)
    unknown = [f for f in fields if f not in cols]
    if unknown:
        raise ValueError(f"fields: {unknown} are not {kind} result fields")
    stmt = _where(select(*[cols[f] for f in fields]), kind, filters, fields)
    rows = session.execute(stmt).all()
    if not rows and explain_empty:
        _explain(session, kind, filters)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
    return {f: list(c) for f, c in zip(fields, columns, strict=True)}


def front_candidates(session: Session, *, x: str, y: str, x_max: bool, y_max: bool, fields: list[str],
                     filters: Mapping[str, Any] | None = None, sigmas: float = NOISE_SIGMAS,
                     explain_empty: bool = False) -> tuple[dict[str, list[Any]], int]:
    """The final rows a 2-D Pareto front of (x exact, y a binomial fraction in [0, 1]) and its noise check
    (db.stats.noise_marks) need, selected in SQL, and the number of rows with both metrics. Exact: the front and the
    marks computed over these rows equal those computed over every row. `fields` must name trial, checkpoint,
    attack, n_total, x and y. Fast where y is one of db.models.FRONT_Y and x is params or macs (then every part
    reads one range of y's covering index).

    1. One grouped scan: per distinct y, the best x and the counts. A front point is the best x of its y, better than
       the best x of every better y: the front levels (y_f, x_f).
    2. One compound SELECT with, per level: its front rows; the nearest distinct row at or behind it (the evidence
       when a front row's own standard error is unknown); and, among the rows within the widest two-standard-error
       band behind it (sigmas * sqrt(1/4n + 1/4n), n the smallest count), the one that minimises
       (y_f - y_d)^2 - sigmas^2 se_d^2: f is within noise iff that row is within sigmas * sqrt(se_f^2 + se_d^2).
       Then every row whose standard error is unknown (n_total missing or 0). Each part is an index range that
       stops at its first row or spans one band.
    Python sees a few dozen rows, not 100,000 (plus the rows tied with a front point). A front of more than
    MAX_FRONT_LEVELS levels (hostile or pathological data) is computed from every row's columns instead."""
    filters = _sweeps_by_id(session, dict(filters or {}))
    cols, _ = _base("final")
    xe, ye, ne = cols[x], cols[y], cols["n_total"]
    counted = ne >= 1
    best_x = func.max(xe) if x_max else func.min(xe)
    grouped = _where(select(ye, best_x, func.count(), func.min(case((counted, ne))), func.count(case((counted, 1)))),
                     "final", filters, [x, y, "n_total"]).where(xe.is_not(None), ye.is_not(None)).group_by(ye)
    groups = session.execute(grouped).all()
    if not groups:
        if explain_empty:
            _explain(session, "final", filters)
        return {f: [] for f in fields}, 0
    n_rows, n_counted = sum(g[2] for g in groups), sum(g[4] for g in groups)
    n_min = min((g[3] for g in groups if g[3] is not None), default=None)
    levels: list[tuple[Any, Any]] = []  # (y, x) of the front, best y first
    for yv, xv, *_ in sorted(groups, key=lambda g: g[0], reverse=y_max):
        if not levels or (xv > levels[-1][1] if x_max else xv < levels[-1][1]):
            levels.append((yv, xv))
    if len(levels) > MAX_FRONT_LEVELS:  # three parts per level would cost more than reading every row once
        every = query_columns(session, fields=fields, filters=filters, kind="final")
        return every, int(n_rows)
    widest = sigmas * math.sqrt(1 / (2 * n_min)) * (1 + 1e-9) if n_min else 0.0  # se^2 <= 1/(4n) for y in [0, 1]
    out = [cols[f].label(f) for f in fields]
    parts = []  # no part repeats `y IS NOT NULL`: SQLite would take it as the index range's bound instead of the band's
    for yv, xv in levels:
        behind, distinct = (ye <= yv) if y_max else (ye >= yv), not_(and_(ye == yv, xe == xv))
        gap = (yv - ye) if y_max else (ye - yv)
        parts += [select(*out).where(ye == yv, xe == xv),
                  select(*out).where(behind, distinct).order_by(ye.desc() if y_max else ye.asc()).limit(1)]
        if n_min is not None:
            band = ye.between(yv - widest, yv) if y_max else ye.between(yv, yv + widest)
            parts.append(select(*out).where(band, distinct, counted)
                         .order_by(gap * gap - sigmas**2 * ye * (1 - ye) / ne).limit(1))
    if n_counted < n_rows:
        parts.append(select(*out).where(ye.is_not(None), or_(ne.is_(None), not_(counted))))
    keys = [fields.index(f) for f in ("trial", "checkpoint", "attack")]
    found: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for i in range(0, len(parts), _MAX_COMPOUND):  # SQLite allows 500 terms in one compound SELECT
        chunk = [select(*_where(p, "final", filters, [*fields, x, y]).where(xe.is_not(None)).subquery().c)
                 for p in parts[i:i + _MAX_COMPOUND]]
        found.update({tuple(r[k] for k in keys): tuple(r) for r in session.execute(union_all(*chunk))})
    columns = list(zip(*found.values(), strict=True)) if found else [() for _ in fields]
    return {f: list(c) for f, c in zip(fields, columns, strict=True)}, int(n_rows)


_MAX_COMPOUND = 300
MAX_FRONT_LEVELS = 1000  # a front with more distinct levels is computed from every row's columns (one scan)


def _sweeps_by_id(session: Session, filters: dict[str, Any]) -> dict[str, Any]:
    """`sweep` (names or ids) as `sweep_ids`, looked up first: then the sweep is a constant of the index's first
    column (PostgreSQL planned a join with sweeps as a full scan plus sort for each front level: 1.2 s at 100,000
    rows), and no sweeps join is needed."""
    if "sweep" not in filters:
        return filters
    ids = set(session.scalars(select(Sweep.id).where(_condition("sweep", None, filters.pop("sweep")))))
    if "sweep_ids" in filters:
        ids &= {int(v) for v in filters["sweep_ids"]}
    return {**filters, "sweep_ids": sorted(ids)}


MAX_PAGE = 10_000  # rows per page at most (the API's `limit` cap)


@dataclass(frozen=True)
class Page:
    """One page of result rows and the number of rows all pages hold."""

    total: int
    limit: int
    offset: int
    rows: list[dict[str, Any]]


def parse_sort(text: str | None) -> list[tuple[str, bool]]:
    """`-robust_acc,params` -> [("robust_acc", True), ("params", False)] (True: descending). Fields must be
    scalar result fields; a bad one -> ValueError naming it."""
    out = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        desc = part.startswith("-")
        field = part.lstrip("+-")
        if field not in RESULT_FIELDS or field in LIST_FIELDS:
            raise ValueError(f"sort: {field!r} is not a scalar result field")
        out.append((field, desc))
    return out


def query_page(session: Session, *, filters: Mapping[str, Any] | None = None, kind: str = "final",
               sort: list[tuple[str, bool]] | None = None, limit: int = 1000, offset: int = 0,
               explain_empty: bool = False) -> Page:
    """One page of `query_results`' rows (same filters; range keys FIELD__gte/__gt/__lte/__lt too), ordered by
    `sort` (field, descending) then the default order, NULLs last; `total` counts every matching row. The
    database sorts, counts and slices, so a page of a large store reads only its rows."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit: must be in 1..{MAX_PAGE}, got {limit}")
    if offset < 0:
        raise ValueError(f"offset: must be >= 0, got {offset}")
    filters = dict(filters or {})
    cols, _ = _base(kind)
    keys: list[Any] = []
    for field, desc in sort or []:
        expr = cols.get(field)
        if expr is not None:  # a field the kind lacks is None in every row: no order
            keys += [expr.is_(None), expr.desc() if desc else expr.asc()]
    stmt, names = _select(kind, filters, tuple(keys))
    total = int(session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0)
    rows = [{f: (_clean(row[f]) if f in names else None) for f in RESULT_FIELDS}
            for row in session.execute(stmt.limit(limit).offset(offset)).mappings()]
    if total == 0 and explain_empty:
        _explain(session, kind, filters)
    return Page(total=total, limit=limit, offset=offset, rows=rows)


def _explain(session: Session, kind: str, filters: dict[str, Any]) -> None:
    for field in AXES_EXPLAINED:
        if field not in filters:
            continue
        rest = {k: v for k, v in filters.items() if k != field}
        expr = _COLUMNS[kind][field]
        found = session.scalars(_where(select(expr).distinct(), kind, rest, [field]))
        present = sorted(v for v in found if v is not None)
        if not present:
            continue  # nothing matches the other filters either: an empty answer is the honest one
        shown = ", ".join(fmt_value(field, v) for v in present)
        raise NoMatch(field, f"no {kind} results with {field} = {_show(field, filters[field])}; {field} values "
                             f"present: {shown}")


def fmt_value(field: str, v: Any) -> str:
    """eps as k/255 where it is one (8/255 (0.03137)); other numbers with %g; text as it is."""
    if isinstance(v, str):
        return v
    if field == "eps" and v > 0 and abs(v * 255 * 2 - round(v * 255 * 2)) < 1e-6:
        return f"{v * 255:g}/255 ({v:.5f})"
    return f"{v:g}"


def _show(field: str, value: Any) -> str:
    values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
    return " or ".join(f"{v.value:g} (+-{v.tol:g})" if isinstance(v, Approx) else str(v) for v in values)


def trial_curves(session: Session, *, trial_id: int) -> list[dict]:
    """Per-epoch rows of one trial ordered by epoch: RESULT_FIELDS, then EPOCH_EXTRA_FIELDS (lr, lam_trajectory)."""
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
