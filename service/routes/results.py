"""Results as JSON, CSV or Parquet (filtered, sorted, paginated, optionally aggregated over seeds, with standard
errors), training curves, Pareto fronts with their noise verdict."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from db.contract import DEFAULT_ATTACK
from db.fields import INT64_MAX
from db.results import MAX_PAGE, NoMatch, parse_sort, query_page, query_results, trial_curves
from db.stats import aggregate_seeds, sort_rows, with_standard_errors
from search_spaces.spec import SpecError
from service.analysis import pareto_report
from service.deps import (
    AttackQuery,
    NumericFieldQuery,
    PrincipalDep,
    SessionDep,
    TrialId,
)
from service.errors import NOT_FOUND, unprocessable
from service.exports import render_parquet, render_rows
from service.filters import parse_filters
from service.query_grammar import DIRECTIONS_PATTERN, NUMERIC_FIELD_PATTERN, SORT_PATTERN
from service.schemas import AggregateRow, CurveRow, ParetoOut, ResultOut
from service.visibility import scoped_filters, visible_trial

router = APIRouter(tags=["results"])


def _bad_filter(e: ValueError) -> HTTPException:
    """A bad query parameter (a filter, `sort`, `maximize`): 422 with loc ["query", FIELD]."""
    if isinstance(e, (SpecError, NoMatch)):
        return unprocessable(e.field, e.reason, where="query")
    field, sep, reason = str(e).partition(": ")
    return unprocessable(field, reason, where="query") if sep and field.isidentifier() else \
        unprocessable("filters", str(e), where="query")


PAGE_DEFAULT = 1000


@router.get("/results", response_model=list[ResultOut] | list[AggregateRow],
            responses={200: {"content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
                             "headers": {"X-Total-Count": {"description": "rows on all pages",
                                                           "schema": {"type": "integer"}}}}})
def results(request: Request, response: Response, session: SessionDep, principal: PrincipalDep,
            format: Literal["json", "csv", "parquet"] = "json", kind: Literal["final", "epoch"] = "final",
            limit: int = Query(PAGE_DEFAULT, ge=1, le=MAX_PAGE, description=f"page size (max {MAX_PAGE})"),
            offset: int = Query(0, ge=0, le=INT64_MAX), sort: str | None = Query(None, pattern=SORT_PATTERN, description="e.g. -robust_acc,params"),
            aggregate: Literal["seeds"] | None = None) -> Any:
    """Rows in the result vocabulary (db.contract.ResultRow), then their binomial standard errors (clean_acc_se,
    robust_acc_se, stability_se, from the counts). Filters on any scalar field: `eps=8/255` or `eps=0.0314`
    (matched to the precision written), `attack=pgd20`, `arch=a,b` (either), ranges as a suffix
    (`robust_acc__gte=0.5`, `params__lt=1e6`; __gt, __lte too). A filter on eps, lam or attack that matches
    nothing answers 422 naming the values present. `sort=-robust_acc,params` (`-`: descending; NULLs last).
    Pagination: `limit` (default 1000, at most 10000) and `offset`; every format answers with the headers
    `X-Total-Count` (rows on all pages), `X-Limit` and `X-Offset`; the JSON body is the page's list of rows.
    `aggregate=seeds`: one row per configuration with the mean and standard deviation over seeds of every metric
    (db.stats.aggregate_seeds), `n_seeds` and `seeds`."""
    reserved = {"format", "kind", "limit", "offset", "sort", "aggregate"}
    try:
        filters = scoped_filters(session, principal, parse_filters(request.query_params.multi_items(),
                                                                    reserved=reserved))
        order = parse_sort(sort)
        if aggregate == "seeds":
            rows = sort_rows(aggregate_seeds(query_results(session, filters=filters, kind=kind,
                                                           explain_empty=True), kind=kind), order)
            total, rows = len(rows), rows[offset:offset + limit]
        else:
            page = query_page(session, filters=filters, kind=kind, sort=order, limit=limit, offset=offset,
                              explain_empty=True)
            total, rows = page.total, with_standard_errors(page.rows)
    except ValueError as e:
        raise _bad_filter(e) from None
    headers = {"X-Total-Count": str(total), "X-Limit": str(limit), "X-Offset": str(offset)}
    if format == "csv":
        return Response(render_rows(rows, "csv"), media_type="text/csv", headers=headers)
    if format == "parquet":
        return Response(render_parquet(rows), media_type="application/vnd.apache.parquet", headers=headers)
    response.headers.update(headers)
    return rows


@router.get("/trials/{trial_id}/curves", response_model=list[CurveRow], responses=NOT_FOUND)
def curves(trial_id: TrialId, session: SessionDep, principal: PrincipalDep) -> list[dict[str, Any]]:
    visible_trial(session, principal, trial_id)
    return trial_curves(session, trial_id=trial_id)


@router.get("/pareto", response_model=ParetoOut,
            responses={200: {"headers": {"X-Total-Count": {"description": "points on the whole front",
                                                           "schema": {"type": "integer"}}}}})
def pareto(request: Request, response: Response, session: SessionDep, principal: PrincipalDep,
           x: NumericFieldQuery = "params", y: NumericFieldQuery = "robust_acc",
           metric: Annotated[list[str] | None, Query(description="more numeric result fields to be non-dominated in",
                                              json_schema_extra={"items": {"type": "string",
                                                                           "pattern": NUMERIC_FIELD_PATTERN}})] = None,
           maximize: Annotated[str | None, Query(pattern=DIRECTIONS_PATTERN, description="true|false, per metric")]
               = None,
           attack: AttackQuery = DEFAULT_ATTACK,
           checkpoint: Literal["best", "last"] = "best",
           limit: int = Query(PAGE_DEFAULT, ge=1, le=MAX_PAGE, description=f"front rows returned (max {MAX_PAGE})"),
           ) -> ParetoOut:
    """Non-dominated rows in (x, y, *metric). `maximize=false,true` overrides the directions (default: accuracies
    and stability maximised, everything else minimised: params and MACs down, robust accuracy up). Each point
    carries its standard errors and `within_noise` (its place on the front rests on differences within two
    standard errors, db.stats.noise_marks); `front_within_noise` and `note` give the verdict on the whole front.
    `n_points` (and the `X-Total-Count` header) counts the whole front; `front` holds its first `limit` rows by
    trial (ties: identical rows are all on the front)."""
    metrics = [x, y, *(metric or [])]
    try:
        directions = None if maximize is None else [_bool("maximize", v) for v in maximize.split(",")]
        filters = scoped_filters(session, principal, parse_filters(request.query_params.multi_items(),
                                                                    reserved={"x", "y", "metric", "maximize",
                                                                              "limit"}))
        report = pareto_report(session, metrics=metrics, maximize=directions, filters=filters, limit=limit)
    except ValueError as e:
        raise _bad_filter(e) from None
    response.headers["X-Total-Count"] = str(len(report.front_keys))
    return ParetoOut(metrics=metrics, maximize=report.maximize, n_points=len(report.front_keys),
                     front=report.front, front_within_noise=report.front_within_noise, note=report.note)


def _bool(field: str, v: str) -> bool:
    if v.lower() in ("true", "max", "1"):
        return True
    if v.lower() in ("false", "min", "0"):
        return False
    raise SpecError(field, f"{v!r} is not one of true/false/max/min")
