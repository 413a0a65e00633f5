"""Rendering result rows as a table, CSV or JSON: columns are the contract's result fields (db.contract)."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd

from db.contract import INT_FIELDS, LIST_FIELDS, RESULT_FIELDS

# The CLI table's default columns: identity, the metrics with their counts, time. Any result field can be asked for.
TABLE_COLUMNS = ["sweep", "trial", "arch", "params", "macs", "method", "lam", "eps", "checkpoint", "epoch", "attack",
                 "clean_acc", "robust_acc", "stability", "n_total", "n_correct", "n_stable", "n_robust",
                 "device_seconds"]


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """A frame of `columns`: integer fields stay integers where some rows lack them (60, not 60.0); list-valued
    fields (emp_lipschitz_blocks) as JSON text in one cell."""
    df = pd.DataFrame(rows, columns=columns)
    for c in INT_FIELDS & set(columns):
        df[c] = df[c].astype("Int64")
    for c in LIST_FIELDS & set(columns):
        df[c] = [None if v is None else json.dumps(v) for v in df[c]]
    return df


def render_rows(rows: list[dict[str, Any]], fmt: str, columns: list[str] | None = None) -> str:
    """`json` (every field), `csv` (every result field, in the contract's order) or `table` (`columns`, default
    TABLE_COLUMNS, dropping those empty in every row)."""
    if fmt == "json":
        return json.dumps(rows, indent=1, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        _frame(rows, list(RESULT_FIELDS)).to_csv(buf, index=False)
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"format: {fmt!r} is not one of table, csv, json")
    if not rows:
        return "(no rows)"
    cols = [c for c in (columns or TABLE_COLUMNS) if c in rows[0]]
    if columns is None:  # the default view leaves out columns no row fills (e.g. counts of epoch rows)
        cols = [c for c in cols if any(r.get(c) is not None for r in rows)]
    return _frame(rows, cols).to_string(index=False, float_format=lambda v: f"{v:.4f}")
