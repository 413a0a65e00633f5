"""Results as JSON or CSV, training curves, Pareto fronts."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from db.contract import DEFAULT_ATTACK
from db.results import NoMatch, query_results, trial_curves
from db.sweeps import get_trial
from search_spaces.spec import SpecError
from service.analysis import pareto_front
from service.deps import SessionDep
from service.errors import not_found, unprocessable
from service.exports import render_rows
from service.filters import parse_filters
from service.schemas import CurveRow, ParetoOut, ResultRow

router = APIRouter(tags=["results"])


def _bad_filter(e: ValueError) -> HTTPException:
    if isinstance(e, (SpecError, NoMatch)):
        return unprocessable(e.field, e.reason)
    return unprocessable("filters", str(e))


@router.get("/results", response_model=list[ResultRow])
def results(request: Request, session: SessionDep, format: Literal["json", "csv"] = "json",
            kind: Literal["final", "epoch"] = "final") -> list[dict[str, Any]] | Response:
    """Rows in the result vocabulary (db.contract.ResultRow). Filters on any scalar field: `eps=8/255` or
    `eps=0.0314` (matched to the precision written), `attack=pgd20`, `arch=a,b` (either). A filter on eps, lam or
    attack that matches nothing answers 422 naming the values present."""
    try:
        filters = parse_filters(request.query_params.multi_items(), reserved={"format", "kind"})
        rows = query_results(session, filters=filters, kind=kind, explain_empty=True)
    except ValueError as e:
        raise _bad_filter(e) from None
    return Response(render_rows(rows, "csv"), media_type="text/csv") if format == "csv" else rows


@router.get("/trials/{trial_id}/curves", response_model=list[CurveRow])
def curves(trial_id: int, session: SessionDep) -> list[dict[str, Any]]:
    if get_trial(session, trial_id=trial_id) is None:
        raise not_found("trial", trial_id)
    return trial_curves(session, trial_id=trial_id)


@router.get("/pareto", response_model=ParetoOut)
def pareto(request: Request, session: SessionDep, x: str = "params", y: str = "robust_acc",
           metric: list[str] = Query(default=[]), maximize: str | None = None,
           attack: str = Query(DEFAULT_ATTACK, description="attack key of the rows (pgd20, cw20, autoattack, ...)"),
           checkpoint: Literal["best", "last"] = "best") -> ParetoOut:
    """Non-dominated rows in (x, y, *metric). `maximize=false,true` overrides the directions (default: accuracies
    and stability maximised, everything else minimised: params and MACs down, robust accuracy up)."""
    metrics = [x, y, *metric]
    try:
        directions = None if maximize is None else [_bool("maximize", v) for v in maximize.split(",")]
        filters = parse_filters(request.query_params.multi_items(), reserved={"x", "y", "metric", "maximize"})
        maxi, front = pareto_front(session, metrics=metrics, maximize=directions, filters=filters)
    except ValueError as e:
        raise _bad_filter(e) from None
    return ParetoOut(metrics=metrics, maximize=maxi, n_points=len(front), front=front)


def _bool(field: str, v: str) -> bool:
    if v.lower() in ("true", "max", "1"):
        return True
    if v.lower() in ("false", "min", "0"):
        return False
    raise SpecError(field, f"{v!r} is not one of true/false/max/min")
