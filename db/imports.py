"""External results (a paper's tables, another lab's CSV) stored as an imported reference sweep.

Rows use the result vocabulary (db.contract.RESULT_FIELDS). A row with an `attack` is a final result of the
trial's `checkpoint` under that attack (a FinalRow); a row with an `epoch` and no attack is a per-epoch row (an
EpochReport). Rows of one configuration (arch, method, lam, eps, norm, dataset, n_train, seed) become one trial,
status `completed` unless the rows give another. The sweep is stored `completed`, `imported=True`, with `source`.

Every row is validated before anything is written: the contract's types; attack keys canonical (pgd20, cw20, fgsm,
autoattack, ...); checkpoint best|last; eps, accuracies and stability in [0, 1]; counts >= 0 and none above
n_total; the trial's fields (params, macs, depths, widths, status) equal across its rows; no (trial, checkpoint,
attack) or (trial, epoch) twice. With `skip_invalid=False` (files and API requests) the first bad row rejects the
whole import with `ImportRejected` naming the row (1-based, data rows as in the file: row 1 is the line after the
CSV header) and the field, and nothing is written; with `skip_invalid=True` (the published references, whose README
says which of its rows a store may drop) bad rows are left out and returned with their reasons.

What happens to each column:
- result fields: stored as above; `sweep` and `trial` (another store's names and ids) are not ours and are kept in
  the provenance instead; the `_se` fields are derived on read, so a file's own are kept in the provenance too;
- missing `seed` -> 0, recorded in the provenance (`seed_not_stated`); missing `lam` -> NULL (a paper that states
  none; `lam_not_stated` in the provenance); missing `n_train` -> None (the full training split); missing
  depths/widths -> read from a WRN arch key, else empty;
- missing `params` or `macs` -> counted by the caller's `count(arch, dataset)` (WRN keys), else left NULL (nothing
  is made up); a row with neither params nor macs, and no way to count them, is rejected naming `params`;
- every other column (a published file's `source`, `note`, `*_std`) is kept per row in the trial's config under
  `{"imported": {"source": ..., "rows": [{"row": 3, "checkpoint": ..., "attack": ..., "note": ..., ...}]}}`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.contract import (
    CHECKPOINTS,
    FIELD_TYPES,
    RESULT_FIELDS,
    EpochReport,
    FinalRow,
    check_attack_key,
)
from db.fields import TRIAL_STATUSES
from db.models import INT64_MAX, RESULT_INT_LIMITS, RESULT_STR_LENGTHS, EpochMetric, FinalResult, Sweep, Trial
from db.sweeps import name_taken

IMPORT_CODE_VERSION = "imported"
KEY_FIELDS: tuple[str, ...] = ("arch", "method", "lam", "eps", "norm", "dataset", "n_train", "seed")
TRIAL_LEVEL: tuple[str, ...] = ("depths", "widths", "params", "macs", "status", "error")  # one value per trial
NOT_OURS: frozenset[str] = frozenset({"sweep", "trial"})  # another store's identity: kept as provenance
FRACTIONS = ("clean_acc", "robust_acc", "stability")
REQUIRED = ("arch", "method", "eps", "norm", "dataset")
_INT_TEXT = re.compile(r"^[+-]?[0-9]+$")  # int() would also take "1_000" and Unicode digits
_WRN = re.compile(r"^wrn-d(\d+(?:-\d+)*)-w([0-9.]+(?:-[0-9.]+)*)$")

Counter = Callable[[str, str], "tuple[int, int] | None"]  # (arch, dataset) -> (params, macs) or None


class ImportRejected(ValueError):
    """Row `row` (1-based data row) has a bad `field`; nothing was written."""

    def __init__(self, row: int, field: str, reason: str):
        super().__init__(f"row {row}: {field}: {reason}")
        self.row, self.field, self.reason = row, field, reason


class NotStorable(ValueError):
    """The sweep's `field` (name, source) cannot be stored; nothing was written."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass
class _Row:
    number: int
    key: tuple[Any, ...]
    trial: dict[str, Any]  # TRIAL_LEVEL values
    report: FinalRow | EpochReport
    extras: dict[str, Any]


@dataclass
class ImportResult:
    sweep_id: int
    name: str
    n_trials: int
    n_final: int
    n_epoch: int
    skipped: list[ImportRejected] = field(default_factory=list)


def wrn_shape(arch: str) -> tuple[str, str] | None:
    """`wrn-d5-5-5-w10-10-4` -> ("5-5-5", "10-10-4"); None for another arch."""
    m = _WRN.match(arch)
    return (m.group(1), m.group(2)) if m else None


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and math.isnan(v))


class TooLarge(ValueError):
    """A value of the right type that its column cannot hold (an integer beyond 32 or 64 bits, text too long)."""


def _shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else f"{text[:60]}... ({len(text):,} characters)"


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, str | int | float):  # true is not 1, a list is not a number
        raise TypeError(f"{type(v).__name__} is not a number")
    f = float(v.strip()) if isinstance(v, str) else float(v)
    if not math.isfinite(f):
        raise ValueError(f"{v!r} is not a finite number")
    return f


def _integer(v: Any) -> int:
    """An exact integer: `9007199254740993` stays ...993 (integer text and JSON integers are read as int, never
    through a float); `60.0` and `6e1` are 60; `1e30` is an integer too large for any column (caught by the caller)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and _INT_TEXT.match(v.strip()):
        if len(v.strip().lstrip("+-").lstrip("0")) > 19:  # beyond 64 bits whatever follows (and int()'s digit limit)
            raise TooLarge(f"{_shown(v)} is too large for the store (at most 19 digits)")
        return int(v.strip())
    f = _number(v)
    if not f.is_integer():
        raise ValueError(f"{v!r} is not an integer")
    return int(f)


def _typed(name: str, v: Any) -> Any:
    """A cell as the field's type, within what its column holds (ValueError or TypeError otherwise)."""
    kind = FIELD_TYPES[name]
    if kind is int:
        i = _integer(v)
        bound = RESULT_INT_LIMITS.get(name, INT64_MAX)
        if abs(i) > bound:
            raise TooLarge(f"{_shown(v)} is too large for the store (at most {bound:,} in magnitude)")
        return i
    if kind is float:
        return _number(v)
    if kind is list:
        out = json.loads(v) if isinstance(v, str) else v
        if not isinstance(out, list):
            raise ValueError(f"{v!r} is not a list of numbers")
        return [_number(x) for x in out]
    text = str(v).strip()
    if len(text) > RESULT_STR_LENGTHS.get(name, len(text)):
        raise TooLarge(f"{len(text):,} characters are too many for the store (at most {RESULT_STR_LENGTHS[name]})")
    return text


_UNSTORABLE = ("text that is not UTF-8 (a lone surrogate) or holds a NUL, a number that is not finite or an integer "
               "beyond 64 bits")


def _storable(v: Any) -> bool:
    """`v` (a kept extra column: any JSON) can be stored: text encodes as UTF-8 (no lone surrogates), numbers are
    finite, integers fit in 64 bits (JSON readers beyond Python's round larger ones)."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return "\x00" not in v  # PostgreSQL text holds no NUL
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, int):
        return abs(v) <= INT64_MAX
    if isinstance(v, list):
        return all(_storable(x) for x in v)
    if isinstance(v, dict):
        return all(_storable(k) and _storable(x) for k, x in v.items())
    return v is None


def _check_values(n: int, vals: dict[str, Any]) -> None:
    for f in REQUIRED:
        if f not in vals:
            raise ImportRejected(n, f, "required")
    if not 0.0 <= vals["eps"] <= 1.0:
        raise ImportRejected(n, "eps", f"{vals['eps']} is outside [0, 1] (pixel units: 8/255 = 0.0314)")
    for f in FRACTIONS:
        if f in vals and not 0.0 <= vals[f] <= 1.0:
            raise ImportRejected(n, f, f"{vals[f]} is outside [0, 1] (a fraction, not a percentage)")
    if "lam" in vals and vals["lam"] < 0:
        raise ImportRejected(n, "lam", f"{vals['lam']} is negative")
    for f in ("n_train", "params", "macs"):
        if f in vals and vals[f] < 1:
            raise ImportRejected(n, f, f"{vals[f]} must be >= 1")
    if "attack" in vals:
        try:
            check_attack_key(vals["attack"])
        except ValueError as e:
            raise ImportRejected(n, "attack", str(e)) from None
        if vals.get("checkpoint") not in CHECKPOINTS:
            raise ImportRejected(n, "checkpoint", f"{vals.get('checkpoint')!r}: a final row needs best or last")
    elif "epoch" not in vals:
        raise ImportRejected(n, "attack", "a row needs an attack (a final result) or an epoch (a per-epoch row)")
    if vals.get("status", "completed") not in TRIAL_STATUSES:
        raise ImportRejected(n, "status", f"{vals['status']!r} is not one of {', '.join(TRIAL_STATUSES)}")
    total = vals.get("n_total")
    for f in ("n_correct", "n_stable", "n_robust"):
        if f in vals and (vals[f] < 0 or (total is not None and vals[f] > total)):
            raise ImportRejected(n, f, f"{vals[f]} is outside 0..n_total ({total})")


def _report(n: int, vals: dict[str, Any]) -> FinalRow | EpochReport:
    cls: type[FinalRow] | type[EpochReport] = FinalRow if "attack" in vals else EpochReport
    data = {k: v for k, v in vals.items() if k in cls.model_fields}
    wrong = sorted(k for k in vals if k in RESULT_FIELDS and k not in cls.model_fields
                   and k not in KEY_FIELDS + TRIAL_LEVEL and k not in NOT_OURS)
    if wrong:
        what = "a final row (it has an attack)" if cls is FinalRow else "a per-epoch row (it has no attack)"
        raise ImportRejected(n, wrong[0], f"not a field of {what}")
    try:
        return cls(**data)
    except ValidationError as e:
        err = e.errors()[0]
        raise ImportRejected(n, ".".join(str(p) for p in err["loc"]) or "row", err["msg"]) from None


def parse_row(n: int, raw: dict[str, Any], count: Counter | None) -> _Row:
    """One row checked and split into its trial key, trial-level values, report and extras (ImportRejected)."""
    vals: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for name, v in raw.items():
        name = str(name).strip()
        if not _storable(name):
            raise ImportRejected(n, name.encode("utf-8", "backslashreplace").decode(), f"not storable: {_UNSTORABLE}")
        if name not in RESULT_FIELDS or name in NOT_OURS:
            if not _blank(v) and not _storable(v):
                raise ImportRejected(n, name, f"not storable: {_UNSTORABLE}")
            if not _blank(v):
                extras[name] = v
            continue
        if _blank(v):
            continue
        try:
            vals[name] = _typed(name, v)
        except TooLarge as e:
            raise ImportRejected(n, name, str(e)) from None
        except (TypeError, ValueError) as e:
            what = {int: "an integer", float: "a number", list: "a list of numbers"}.get(FIELD_TYPES[name], "text")
            raise ImportRejected(n, name, f"{_shown(v)} is not {what} ({e})") from None
        if isinstance(vals[name], str) and not _storable(vals[name]):  # numbers are checked by _typed
            raise ImportRejected(n, name, f"not storable: {_UNSTORABLE}")
    _check_values(n, vals)
    if "lam" not in vals:
        vals["lam"], extras["lam_not_stated"] = None, True
    if "seed" not in vals:
        vals["seed"], extras["seed_not_stated"] = 0, True
    shape = wrn_shape(vals["arch"])
    if shape is not None:
        vals.setdefault("depths", shape[0])
        vals.setdefault("widths", shape[1])
    if "params" not in vals or "macs" not in vals:
        counted = count(vals["arch"], vals["dataset"]) if count is not None else None
        if counted is None and "params" not in vals and "macs" not in vals:
            raise ImportRejected(n, "params", f"give params or macs: neither is in the row, and {vals['arch']!r} "
                                              f"on {vals['dataset']!r} cannot be counted (only WRN keys "
                                              f"wrn-d<D1-D2-D3>-w<W1-W2-W3> are)")
        if counted is not None:
            vals.setdefault("params", counted[0])
            vals.setdefault("macs", counted[1])
    trial = {"depths": vals.get("depths", ""), "widths": vals.get("widths", ""), "params": vals.get("params"),
             "macs": vals.get("macs"), "status": vals.get("status", "completed"), "error": vals.get("error")}
    return _Row(n, tuple(vals.get(k) for k in KEY_FIELDS), trial, _report(n, vals), extras)


def _slot(row: _Row) -> tuple[Any, ...]:
    r = row.report
    return (row.key, r.checkpoint, r.attack) if isinstance(r, FinalRow) else (row.key, "epoch", r.epoch)


def validate_rows(rows: Sequence[dict[str, Any]], *, count: Counter | None = None,
                  skip_invalid: bool = False) -> tuple[list[_Row], list[ImportRejected]]:
    """Parse every row; the first bad one raises ImportRejected (or, with skip_invalid, is left out)."""
    parsed: list[_Row] = []
    skipped: list[ImportRejected] = []
    trials: dict[tuple[Any, ...], _Row] = {}
    slots: dict[tuple[Any, ...], int] = {}
    for i, raw in enumerate(rows, start=1):
        try:
            row = parse_row(i, raw, count)
            first = trials.get(row.key)
            for f in TRIAL_LEVEL if first is not None else ():
                if row.trial[f] != first.trial[f]:
                    raise ImportRejected(i, f, f"{row.trial[f]!r} differs from {first.trial[f]!r} in row "
                                               f"{first.number} of the same configuration")
            if _slot(row) in slots:
                what = "checkpoint and attack" if isinstance(row.report, FinalRow) else "epoch"
                raise ImportRejected(i, "attack" if isinstance(row.report, FinalRow) else "epoch",
                                     f"the same configuration, {what} as row {slots[_slot(row)]}")
        except ImportRejected as e:
            if not skip_invalid:
                raise
            skipped.append(e)
            continue
        trials.setdefault(row.key, row)
        slots[_slot(row)] = i
        parsed.append(row)
    return parsed, skipped


def _config(key: tuple[Any, ...], rows: list[_Row], source: str | None) -> dict[str, Any]:
    provenance = []
    for r in rows:
        rep = r.report
        where = ({"checkpoint": rep.checkpoint, "attack": rep.attack} if isinstance(rep, FinalRow)
                 else {"epoch": rep.epoch})
        if r.extras:
            provenance.append({"row": r.number, **where, **r.extras})
    return {**dict(zip(KEY_FIELDS, key, strict=True)), "imported": {"source": source, "rows": provenance}}


def import_rows(session: Session, *, name: str, rows: Sequence[dict[str, Any]], source: str | None = None,
                count: Counter | None = None, skip_invalid: bool = False) -> ImportResult:
    """Validate `rows` and write them as the imported sweep `name` in the caller's transaction (flushes).
    ImportRejected (nothing written) for a bad row unless `skip_invalid`; NotStorable for a name or source the
    store cannot hold; SweepExists for a taken name;
    ValueError when no row is left to store."""
    for what, text in (("name", name), ("source", source)):
        if not _storable(text):
            raise NotStorable(what, f"not storable: {_UNSTORABLE}")
    if session.scalar(select(Sweep.id).where(Sweep.name == name)) is not None:
        raise name_taken(name)
    parsed, skipped = validate_rows(rows, count=count, skip_invalid=skip_invalid)
    if not parsed:
        raise ValueError(f"rows: none of the {len(rows)} rows can be stored"
                         + (f" (first: {skipped[0]})" if skipped else ""))
    groups: dict[tuple[Any, ...], list[_Row]] = {}
    for r in parsed:
        groups.setdefault(r.key, []).append(r)
    sweep = Sweep(name=name, spec={"imported": True, "source": source, "n_rows": len(parsed)}, status="completed",
                  code_version=IMPORT_CODE_VERSION, n_trials=len(groups), imported=True, source=source)
    session.add(sweep)
    try:
        session.flush()
    except IntegrityError as e:  # a concurrent import or submission of the same name won the race
        raise name_taken(name) from e
    trials = []
    for idx, (key, members) in enumerate(groups.items()):
        config = _config(key, members, source)
        blob = json.dumps({k: config[k] for k in KEY_FIELDS}, sort_keys=True, default=str)
        trials.append(Trial(sweep_id=sweep.id, idx=idx, config=config, code_version=IMPORT_CODE_VERSION,
                            config_hash=hashlib.sha256(blob.encode()).hexdigest()[:24],
                            **dict(zip(KEY_FIELDS, key, strict=True)), **members[0].trial))
    session.add_all(trials)
    session.flush()
    finals: list[dict[str, Any]] = []
    epochs: list[dict[str, Any]] = []
    for trial, members in zip(trials, groups.values(), strict=True):
        for r in members:
            data = r.report.model_dump(exclude_none=True)
            if isinstance(r.report, FinalRow):
                finals.append({"trial_id": trial.id, **FinalResult.copied_from(trial), **data})
            else:
                epochs.append({"trial_id": trial.id, **data})
    for table, batch in ((FinalResult, finals), (EpochMetric, epochs)):
        for cols in {tuple(sorted(d)) for d in batch}:  # one executemany per column set
            session.execute(insert(table), [d for d in batch if tuple(sorted(d)) == cols])
    session.flush()
    return ImportResult(sweep.id, name, len(groups), len(finals), len(epochs), skipped)

