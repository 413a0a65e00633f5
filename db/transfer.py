"""Whole sweeps out of one store and into another (e.g. a cluster's PostgreSQL into a laptop's SQLite):
the sweep with its spec, every trial with its config and provenance, every epoch row and every final row.

The dump is plain JSON (`format: robustgrid-sweeps/2`; dumps of format 1, written before migration 0002 renamed
columns, are read with the same renames). Import writes everything in the caller's transaction, so a bad dump
leaves nothing behind; ids are new, names must not clash (or get a suffix).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, inspect, select
from sqlalchemy.orm import Session

from db.models import EpochMetric, FinalResult, Sweep, Trial
from db.sweeps import SweepExists

FORMAT = "robustgrid-sweeps/2"
# Format 1's column names -> today's (the renames of migration 0002).
V1_RENAMES: dict[str, dict[str, str]] = {
    "trials": {"flops": "macs", "gpu_seconds": "device_seconds"},
    "epoch_metrics": {"clean_loss_test": "clean_loss_val", "adv_loss_test": "adv_loss_val", "seconds": "device_seconds"},
    "final_results": {"gpu_seconds": "device_seconds"},
}
_SKIP = {"id", "sweep_id", "trial_id"}  # ids are new in the target store


def _columns(obj: Any) -> dict[str, Any]:
    skip = _SKIP | set(FinalResult.COPIED_FROM_TRIAL) if isinstance(obj, FinalResult) else _SKIP  # the trial's
    out = {}
    for attr in inspect(obj).mapper.column_attrs:
        if attr.key in skip:
            continue
        value = getattr(obj, attr.key)
        out[attr.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def export_sweeps(session: Session, *, sweep_ids: list[int]) -> dict[str, Any]:
    """The dump of the given sweeps (unknown ids raise LookupError naming them)."""
    sweeps = session.scalars(select(Sweep).where(Sweep.id.in_(sweep_ids)).order_by(Sweep.id)).all()
    missing = sorted(set(sweep_ids) - {s.id for s in sweeps})
    if missing:
        raise LookupError(f"sweep: no sweep with id {missing}")
    return {"format": FORMAT, "sweeps": [
        _columns(s) | {"trials": [
            _columns(t) | {"epochs": [_columns(e) for e in t.epoch_metrics],
                           "finals": [_columns(f) for f in t.final_results]}
            for t in sorted(s.trials, key=lambda t: t.idx)]}
        for s in sweeps]}


def _parse(model: type, row: dict[str, Any], v1: bool = False) -> dict[str, Any]:
    if v1:
        renames = V1_RENAMES.get(model.__tablename__, {})  # type: ignore[attr-defined]
        row = {renames.get(k, k): v for k, v in row.items()}
    known = {a.key: a for a in inspect(model).column_attrs}
    unknown = sorted(set(row) - set(known))
    if unknown:
        raise ValueError(f"{model.__tablename__}: unknown field(s) {unknown} in the dump")
    out = {}
    for key, value in row.items():
        is_time = isinstance(known[key].columns[0].type, DateTime)
        out[key] = datetime.fromisoformat(value) if is_time and isinstance(value, str) else value
    return out


def import_sweeps(session: Session, *, dump: dict[str, Any], suffix: str | None = None) -> list[Sweep]:
    """Insert the dump's sweeps with new ids. A name already present raises SweepExists unless `suffix` is
    given (then `name + suffix`). Everything is added to the session; the caller's transaction commits it."""
    v1 = dump.get("format") == "robustgrid-sweeps/1"
    if dump.get("format") != FORMAT and not v1:
        raise ValueError(f"format: expected {FORMAT!r}, got {dump.get('format')!r}")
    created = []
    for raw in dump["sweeps"]:
        raw = dict(raw)
        trials = raw.pop("trials")
        fields = _parse(Sweep, raw)
        if suffix:
            fields["name"] = f"{fields['name']}{suffix}"
        if session.scalar(select(Sweep.id).where(Sweep.name == fields["name"])) is not None:
            raise SweepExists(f"sweep: a sweep named {fields['name']!r} already exists (import with a suffix)")
        sweep = Sweep(**fields)
        for t in trials:
            t = dict(t)
            epochs, finals = t.pop("epochs"), t.pop("finals")
            trial = Trial(**_parse(Trial, t, v1))
            trial.epoch_metrics = [EpochMetric(**_parse(EpochMetric, e, v1)) for e in epochs]
            trial.final_results = [FinalResult(**_parse(FinalResult, f, v1)) for f in finals]
            sweep.trials.append(trial)
        session.add(sweep)
        session.flush()
        created.append(sweep)
    return created
