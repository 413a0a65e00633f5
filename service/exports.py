"""Rendering result rows as a table, CSV or JSON (one vocabulary: the result fields)."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd

from db.fields import RESULT_FIELDS

TABLE_COLUMNS = ["sweep", "trial", "arch", "params", "method", "eps", "checkpoint", "epoch", "attack",
                 "clean_acc", "robust_acc", "stability", "gpu_seconds"]


def render_rows(rows: list[dict[str, Any]], fmt: str, columns: list[str] | None = None) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=1, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        pd.DataFrame(rows, columns=list(RESULT_FIELDS)).to_csv(buf, index=False)
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"format: {fmt!r} is not one of table, csv, json")
    if not rows:
        return "(no rows)"
    cols = [c for c in (columns or TABLE_COLUMNS) if c in rows[0]]
    df = pd.DataFrame(rows)[cols]
    return df.to_string(index=False, float_format=lambda v: f"{v:.4f}")
