"""Questions asked of the store: Pareto fronts across sweeps. Reads through db/, computes with db's pure functions."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db.contract import DEFAULT_ATTACK, MAXIMIZED, NUMERIC_FIELDS
from db.pareto import pareto_rows
from db.results import query_results
from search_spaces.spec import SpecError


def pareto_front(
    session: Session, *, metrics: list[str], maximize: list[bool] | None, filters: dict[str, Any]
) -> tuple[list[bool], list[dict[str, Any]]]:
    """Non-dominated final-result rows in `metrics` (two or more). Defaults: the best checkpoint and the studies'
    attack (pgd20); `filters` may name another checkpoint or attack key (attack=autoattack)."""
    if len(metrics) < 2:
        raise SpecError("metrics", f"a Pareto front needs two or more metrics, got {metrics}")
    for m in metrics:
        if m not in NUMERIC_FIELDS:
            raise SpecError("metrics", f"{m!r} is not a numeric result field")
    if maximize is None:
        maximize = [m in MAXIMIZED for m in metrics]
    if len(maximize) != len(metrics):
        raise SpecError("maximize", f"{len(maximize)} directions for {len(metrics)} metrics")
    filters = {"checkpoint": "best", "attack": DEFAULT_ATTACK, **filters}
    rows = query_results(session, filters=filters, kind="final", explain_empty=True)
    return maximize, pareto_rows(rows, metrics, maximize)
