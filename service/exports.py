"""Rendering result rows as a table, CSV or JSON: columns are the contract's result fields (db.contract)."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd

from db.contract import INT_FIELDS, LIST_FIELDS, RESULT_FIELDS
from db.stats import SE_FIELDS, SE_METRICS
from service.csv_cells import defuse

# The CLI table's default columns: identity, the metrics with their counts, time. Any result field can be asked for.
TABLE_COLUMNS = ["sweep", "trial", "arch", "params", "macs", "method", "lam", "eps", "checkpoint", "epoch", "attack",
                 "clean_acc", "robust_acc", "stability", "n_total", "n_correct", "n_stable", "n_robust",
                 "device_seconds"]


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """A frame of `columns`: integer fields stay integers where some rows lack them (60, not 60.0); list-valued
    fields (emp_lipschitz_blocks) as JSON text in one cell."""
    df = pd.DataFrame(rows, columns=columns)
    for c in INT_FIELDS & set(columns):
        try:
            df[c] = df[c].astype("Int64")
        except (TypeError, ValueError):  # a mean over seeds (e.g. the checkpoint's epoch) stays a float
            pass
    for c in LIST_FIELDS & set(columns):
        df[c] = [None if v is None else json.dumps(v) for v in df[c]]
    return df


def export_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every result field in the contract's order, then the standard errors (SE_FIELDS) when the rows carry them;
    rows aggregated over seeds keep their own columns (group, n_seeds, means, `_std`, `_se`)."""
    if rows and "n_seeds" in rows[0]:
        return list(rows[0])
    extra = [f for f in SE_FIELDS if rows and f in rows[0]]
    return [*RESULT_FIELDS, *extra]


def _export_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = _frame(rows, export_columns(rows))
    for c in df.columns:  # other lists (an aggregate's seeds) as JSON text too
        if df[c].map(lambda v: isinstance(v, list)).any():
            df[c] = [None if v is None else json.dumps(v) for v in df[c]]
    return df


def render_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV (RFC 4180: CRLF line ends, so a cell holding a CR or LF is quoted; the columns of
    `export_columns`), text cells defused against formula injection (service.csv_cells: `=HYPERLINK(...)` is
    written `'=HYPERLINK(...)`; numbers, -0.5 too, stay numbers)."""
    df = _export_frame(rows)
    for c in df.columns:
        if not pd.api.types.is_numeric_dtype(df[c]):  # text (pandas' str or object dtype); numbers untouched
            df[c] = df[c].map(defuse)
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\r\n")  # RFC 4180; with "\n" alone a CR in a cell went unquoted
    return buf.getvalue()


def render_parquet(rows: list[dict[str, Any]]) -> bytes:
    """The rows as a Parquet file (pandas with pyarrow), columns as in CSV."""
    buf = io.BytesIO()
    _export_frame(rows).to_parquet(buf, index=False)
    return buf.getvalue()


def _pm(rows: list[dict[str, Any]], cols: list[str]) -> pd.DataFrame:
    """Accuracies and stability as `0.184 ± 0.017` where the row has its standard error (else the value)."""
    df = _frame(rows, cols)
    for m in SE_METRICS:
        if m in cols and rows and f"{m}_se" in rows[0]:
            df[m] = [("" if v is None else f"{v:.3f}") + ("" if se is None else f" ± {se:.3f}")
                     for v, se in ((r.get(m), r.get(f"{m}_se")) for r in rows)]
    return df


def render_rows(rows: list[dict[str, Any]], fmt: str, columns: list[str] | None = None) -> str:
    """`json` (every field), `csv` (render_csv: every result field, in the contract's order, then the standard errors
    the rows carry; text cells defused) or `table` (`columns`, default TABLE_COLUMNS, dropping those empty in every row; an accuracy with its
    standard error reads `0.184 ± 0.017`)."""
    if fmt == "json":
        return json.dumps(rows, indent=1, default=str)
    if fmt == "csv":
        return render_csv(rows)
    if fmt != "table":
        raise ValueError(f"format: {fmt!r} is not one of table, csv, json")
    if not rows:
        return "(no rows)"
    cols = [c for c in (columns or TABLE_COLUMNS) if c in rows[0]]
    if columns is None:  # the default view leaves out columns no row fills (e.g. counts of epoch rows)
        cols = [c for c in cols if any(r.get(c) is not None for r in rows)]
    return _pm(rows, cols).to_string(index=False, float_format=lambda v: f"{v:.4f}")


def collapse_best_last(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Final rows with each (trial, attack)'s `last` row dropped where it is the `best` checkpoint (the same epoch,
    evaluated once), the best row then shown as `best=last`; every other row as it is."""
    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return r["trial"], r["attack"], r.get("epoch")

    shared = ({key(r) for r in rows if r.get("checkpoint") == "best"}
              & {key(r) for r in rows if r.get("checkpoint") == "last" and r.get("epoch") is not None})
    out = []
    for r in rows:
        if key(r) in shared:
            if r["checkpoint"] == "last":
                continue
            r = r | {"checkpoint": "best=last"}
        out.append(r)
    return out
