"""Plots as PNG or SVG: a sweep's Pareto scatter, depth heatmap, eps plot and lambda x width lines; a trial's
training curves. Thin: each route builds the options, calls one function of service.plots and renders. The results
pages embed and link these, so they take a page login as well as a bearer token (service.auth.require_reader):
every route here is a GET that changes nothing."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from db.contract import DEFAULT_ATTACK
from db.results import NoMatch
from db.sweeps import NotFound
from search_spaces.spec import SpecError
from service.deps import AttackQuery, ReaderDep, SessionDep, SweepId, TrialId
from service.errors import conflict, unprocessable
from service.plots import MEDIA_TYPES, PlotOptions, render, sweep_figure, trial_figure
from service.query_grammar import NUMERIC_FIELD_PATTERN
from service.visibility import check_visible, visible_trial

router = APIRouter(tags=["plots"])

MAX_REFERENCES = 5  # reference sweeps on one plot (each is read and its front computed)
SweepKind = Literal["pareto", "depth-heatmap", "eps", "lambda-width"]
Format = Literal["png", "svg"]
IMAGE_RESPONSES: dict[int | str, dict] = {
    200: {"content": {"image/png": {}, "image/svg+xml": {}}, "description": "the plot"},
    404: {"description": "no such sweep or trial"},
    409: {"description": "the sweep's or trial's data cannot make this plot"},
}


QUERY_OPTIONS = frozenset({"x", "metric", "attack", "checkpoint", "reference"})


def _http(e: Exception, what: str) -> HTTPException:
    """404 for a missing sweep or trial; 422 (loc query) for a bad option; 409 when the request is fine but the
    sweep's data cannot make this plot (a reference without stage depths, a heatmap of more cells than it draws)."""
    if isinstance(e, NotFound):
        return HTTPException(status_code=404, detail=str(e))
    if isinstance(e, (SpecError, NoMatch)) and e.field in QUERY_OPTIONS:
        return unprocessable(e.field, e.reason, where="query")
    if isinstance(e, (SpecError, NoMatch)):
        return conflict(f"{what} cannot be drawn: {e.field}: {e.reason}")
    return conflict(f"{what} cannot be drawn: {e}")


@router.get("/sweeps/{sweep_id}/plots/{kind}.{fmt}", response_class=Response, responses=IMAGE_RESPONSES)
def sweep_plot(
    sweep_id: SweepId, kind: SweepKind, fmt: Format, session: SessionDep, principal: ReaderDep,
    x: Annotated[Literal["params", "macs"], Query(description="Pareto x axis")] = "params",
    metric: Annotated[str, Query(pattern=NUMERIC_FIELD_PATTERN,
                                 description="numeric result field: Pareto / lambda-width y, heatmap colour")] =
        "robust_acc",
    attack: AttackQuery = DEFAULT_ATTACK,
    checkpoint: Literal["best", "last"] = "best",
    reference: Annotated[list[str] | None, Query(description=f"Pareto: sweeps (id or name) on the same axes, at "
                                                             f"most {MAX_REFERENCES}", max_length=MAX_REFERENCES)] =
        None,
) -> Response:  # fmt: skip
    """The sweep's plot `kind` as PNG or SVG. Reference sweeps (imported) are drawn grey with square markers."""
    check_visible(session, principal, [sweep_id, *(reference or [])])
    try:
        options = PlotOptions(x=x, metric=metric, attack=attack, checkpoint=checkpoint, reference=tuple(reference or ()))
        body = render(sweep_figure(session, kind=kind, sweep_ref=sweep_id, options=options), fmt)
    except (NotFound, ValueError) as e:
        raise _http(e, f"the {kind} plot of sweep {sweep_id}") from None
    return Response(body, media_type=MEDIA_TYPES[fmt])


@router.get("/trials/{trial_id}/plots/curves.{fmt}", response_class=Response, responses=IMAGE_RESPONSES)
def trial_plot(trial_id: TrialId, fmt: Format, session: SessionDep, principal: ReaderDep) -> Response:
    """Training curves of a trial: natural risk vs robust regularisation, stability, validation robust accuracy."""
    visible_trial(session, principal, trial_id)
    try:
        body = render(trial_figure(session, kind="curves", trial_id=trial_id), fmt)
    except (NotFound, ValueError) as e:
        raise _http(e, f"the curves of trial {trial_id}") from None
    return Response(body, media_type=MEDIA_TYPES[fmt])
