"""What every plot kind shares: the options, the rows it reads, binomial standard errors, and rendering.

Figures are `matplotlib.figure.Figure` objects made without pyplot: no global figure registry and no GUI backend,
so the API's worker threads can draw concurrently. `render` writes PNG through Agg and SVG through the svg backend.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure
from sqlalchemy.orm import Session

from db.contract import CHECKPOINTS, DEFAULT_ATTACK, NUMERIC_FIELDS, check_attack_key
from db.models import Sweep
from db.results import query_results
from db.stats import SE_METRICS, binomial_se
from db.sweeps import NotFound, get_sweep_by_name_or_id
from search_spaces.spec import SpecError

MEDIA_TYPES: dict[str, str] = {"png": "image/png", "svg": "image/svg+xml"}
DPI = 100  # PNG pixels per inch: a 6.4 x 4.8 in figure is 640 x 480 px
X_FIELDS = ("params", "macs")
REFERENCE_COLOR = "0.55"  # grey: imported (published) sweeps
REFERENCE_MARKER = "s"
RUN_MARKER = "o"


@dataclass(frozen=True)
class PlotOptions:
    """Query options of the plot routes and `robustgrid plot`. `x`: params | macs (Pareto); `metric`: any numeric
    result field (the y of Pareto and lambda-width, the heatmap's colour); `attack`, `checkpoint`: which final rows;
    `reference`: sweeps (ids or names) overlaid on the Pareto plot."""

    x: str = "params"
    metric: str = "robust_acc"
    attack: str = DEFAULT_ATTACK
    checkpoint: str = "best"
    reference: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.x not in X_FIELDS:
            raise SpecError("x", f"{self.x!r} is not one of {', '.join(X_FIELDS)}")
        if self.metric not in NUMERIC_FIELDS:
            raise SpecError("metric", f"{self.metric!r} is not a numeric result field")
        if self.checkpoint not in CHECKPOINTS:
            raise SpecError("checkpoint", f"{self.checkpoint!r} is not one of {', '.join(CHECKPOINTS)}")
        try:
            check_attack_key(self.attack)
        except ValueError as e:
            raise SpecError("attack", str(e)) from None


MAX_SERIES = 20  # lines (eps groups, lambda-width lines) one plot draws; beyond, the title counts the rest
MAX_HEATMAP_CELLS = 2_500  # depth-heatmap cells (D1 x D2 x D3 panels) drawn, each with its value written in it

def resolve_sweep(session: Session, ref: int | str) -> Sweep:
    """A sweep by id or name; NotFound naming the reference otherwise."""
    sweep = get_sweep_by_name_or_id(session, ref=str(ref))
    if sweep is None:
        raise NotFound(f"sweep {ref!r} not found")
    return sweep


def final_rows(session: Session, *, sweep: Sweep, options: PlotOptions) -> list[dict[str, Any]]:
    """The sweep's final rows at the options' checkpoint and attack. An attack the sweep lacks, where it has other
    attacks' rows, raises db.results.NoMatch naming the attacks present."""
    filters = {"sweep_ids": [sweep.id], "checkpoint": options.checkpoint, "attack": options.attack}
    return query_results(session, filters=filters, kind="final", explain_empty=True)


def row_se(row: dict[str, Any], metric: str) -> float | None:
    """The standard error of `row[metric]`: a stored `<metric>_se` when the row has one, else the binomial one
    from `n_total` for accuracies and stability, else None (no error bar)."""
    stored = row.get(f"{metric}_se")
    if stored is not None:
        return float(stored)
    return binomial_se(row.get(metric), row.get("n_total")) if metric in SE_METRICS else None


def mean_and_se(values: list[float], ses: list[float | None]) -> tuple[float, float | None]:
    """Mean of k independent estimates (seeds) and its standard error sqrt(sum se_i^2) / k (None if any is
    unknown)."""
    k = len(values)
    mean = sum(values) / k
    if any(s is None for s in ses):
        return mean, None
    return mean, math.sqrt(sum(s * s for s in ses if s is not None)) / k


def label_of(field_name: str) -> str:
    """An axis label with the unit the vocabulary gives the field."""
    units = {"params": "parameters", "macs": "MACs (one forward pass)", "eps": "eps (/255)",
             "device_seconds": "device seconds (s)"}  # fmt: skip
    if field_name in units:
        return units[field_name]
    if field_name in SE_METRICS:
        return f"{field_name} (fraction)"
    if "loss" in field_name or field_name in ("natural_risk", "robust_reg"):
        return f"{field_name} (nats)"
    return field_name


def lam_text(lam: float | None) -> str:
    """`lam 6` in a label or title; an imported reference that states no lambda (NULL) says so."""
    return "lam not stated" if lam is None else f"lam {lam:g}"


def new_figure(width_in: float, height_in: float) -> Figure:
    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def render(fig: Figure, fmt: str) -> bytes:
    """The figure as PNG (Agg) or SVG bytes (no timestamp in the SVG)."""
    if fmt not in MEDIA_TYPES:
        raise SpecError("format", f"{fmt!r} is not one of {', '.join(MEDIA_TYPES)}")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


def empty_note(ax: Any, text: str) -> None:
    """Say on the axes why nothing is drawn (a plot that answers 200 should tell, not show blank axes)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, wrap=True, gid="note")
