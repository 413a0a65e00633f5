"""Plots of stored results (matplotlib Figures drawn without pyplot; PNG through Agg, SVG): one module per kind.

`sweep_figure(session, kind=..., sweep_ref=..., options=...)` and `trial_figure(session, kind="curves",
trial_id=...)` are what the API routes (service.routes.plots) and `robustgrid plot` call; `render(fig, fmt)` gives
the bytes. Each kind's module also exposes its data function (tested on numbers) and its draw function.
"""

from __future__ import annotations

from collections.abc import Callable

from matplotlib.figure import Figure
from sqlalchemy.orm import Session

from search_spaces.spec import SpecError
from service.plots.common import MEDIA_TYPES, PlotOptions, render
from service.plots.curves import curves_figure
from service.plots.depth_heatmap import depth_heatmap_figure
from service.plots.eps import eps_figure
from service.plots.lambda_width import lambda_width_figure
from service.plots.pareto import pareto_figure


def _pareto(session: Session, *, sweep_ref: int | str, options: PlotOptions) -> Figure:
    return pareto_figure(session, sweep_refs=[sweep_ref, *options.reference], options=options)


SWEEP_KINDS: dict[str, Callable[..., Figure]] = {
    "pareto": _pareto,
    "depth-heatmap": depth_heatmap_figure,
    "eps": eps_figure,
    "lambda-width": lambda_width_figure,
}
TRIAL_KINDS: tuple[str, ...] = ("curves",)
KINDS: tuple[str, ...] = (*SWEEP_KINDS, *TRIAL_KINDS)


def sweep_figure(session: Session, *, kind: str, sweep_ref: int | str, options: PlotOptions) -> Figure:
    """A sweep-level plot. Unknown kind -> SpecError('kind'); unknown sweep -> db.sweeps.NotFound; an attack with
    no rows where others exist -> db.results.NoMatch."""
    if kind not in SWEEP_KINDS:
        raise SpecError("kind", f"{kind!r} is not a sweep plot; one of {', '.join(SWEEP_KINDS)}")
    return SWEEP_KINDS[kind](session, sweep_ref=sweep_ref, options=options)


def trial_figure(session: Session, *, kind: str, trial_id: int) -> Figure:
    if kind not in TRIAL_KINDS:
        raise SpecError("kind", f"{kind!r} is not a trial plot; one of {', '.join(TRIAL_KINDS)}")
    return curves_figure(session, trial_id=trial_id)


__all__ = ["KINDS", "MEDIA_TYPES", "SWEEP_KINDS", "TRIAL_KINDS", "PlotOptions", "render", "sweep_figure",
           "trial_figure"]
