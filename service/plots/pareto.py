"""The Pareto scatter: parameters or MACs against a metric (robust accuracy by default), one series per sweep,
its front (db.pareto.pareto_mask, as service.analysis.pareto_report takes it) highlighted as a step line, binomial error bars, points labelled by arch;
reference sweeps (imported, published results) drawn grey with square markers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sqlalchemy.orm import Session

from db.contract import MAXIMIZED
from db.pareto import pareto_mask
from db.results import query_columns
from service.plots.common import (
    REFERENCE_COLOR,
    REFERENCE_MARKER,
    RUN_MARKER,
    PlotOptions,
    empty_note,
    label_of,
    new_figure,
    resolve_sweep,
    row_se,
)

MAX_LABELLED = 40  # a series with more points labels its front points only (beyond, labels overlap unreadably)
MAX_FRONT_LABELS = 200  # and at most this many of them (a front of thousands of points is a solid line)


@dataclass
class ParetoSeries:
    """One sweep's points (rows with both coordinates), in query order; `on_front` marks its Pareto front."""

    sweep: str
    imported: bool
    x: list[float]
    y: list[float]
    se: list[float | None]
    labels: list[str]
    on_front: list[bool]
    dropped: int  # rows without x or y

    def front(self) -> list[tuple[float, float]]:
        """The front's (x, y), sorted by x."""
        return sorted((x, y) for x, y, f in zip(self.x, self.y, self.on_front, strict=True) if f)


def pareto_series(session: Session, *, sweep_refs: list[int | str], options: PlotOptions) -> list[ParetoSeries]:
    """One series per sweep (ids or names), each with its own front in (options.x, options.metric). Identical
    points (the same x, y, standard error and arch) are drawn once: 100,000 identical rows are one marker."""
    out = []
    for ref in sweep_refs:
        sweep = resolve_sweep(session, ref)
        filters = {"sweep_ids": [sweep.id], "checkpoint": options.checkpoint, "attack": options.attack}
        cols = query_columns(session, fields=["trial", "arch", "n_total", options.x, options.metric],
                             filters=filters, kind="final", explain_empty=True)
        rows = list(zip(cols["arch"], cols["n_total"], cols[options.x], cols[options.metric], strict=True))
        points: dict[tuple[Any, ...], None] = {}  # distinct points, in query order
        for arch, n_total, x, y in rows:
            if x is not None and y is not None:
                points.setdefault((float(x), float(y), row_se({options.metric: y, "n_total": n_total},
                                                              options.metric), arch), None)
        # the front of service.analysis.pareto_report (the same rows, directions and definition), on distinct points
        xy = np.array([p[:2] for p in points], dtype=float).reshape(-1, 2)
        on_front = pareto_mask(xy, [options.x in MAXIMIZED, options.metric in MAXIMIZED]).tolist()
        points = {p + (f,): None for p, f in zip(points, on_front, strict=True)}
        usable = list(points)
        out.append(ParetoSeries(
            sweep=sweep.name, imported=bool(sweep.imported), x=[p[0] for p in usable], y=[p[1] for p in usable],
            se=[p[2] for p in usable], labels=[p[3] for p in usable], on_front=[p[4] for p in usable],
            dropped=sum(x is None or y is None for *_, x, y in rows)))  # fmt: skip
    return out


def draw_pareto(series: list[ParetoSeries], options: PlotOptions) -> Figure:
    """The scatter. Artists carry gids for readers of the figure: `points:<sweep>`, `front:<sweep>` (the step
    line), `front-points:<sweep>`, `errors:<sweep>`; arch labels are the axes' texts."""
    fig = new_figure(7.5, 5.0)
    ax = fig.add_subplot()
    run_colors = iter(f"C{i}" for i in range(10))
    for s in series:
        color = REFERENCE_COLOR if s.imported else next(run_colors, "C9")
        marker = REFERENCE_MARKER if s.imported else RUN_MARKER
        name = f"{s.sweep} (reference)" if s.imported else s.sweep
        if not s.x:
            continue
        if any(e is not None for e in s.se):
            bars = ax.errorbar(s.x, s.y, yerr=[e or 0.0 for e in s.se], fmt="none", ecolor=color, alpha=0.6,
                               elinewidth=0.8, capsize=2)
            for coll in bars.lines[2]:
                coll.set_gid(f"errors:{s.sweep}")
        ax.scatter(s.x, s.y, marker=marker, color=color, s=22, alpha=0.7, label=name, gid=f"points:{s.sweep}")
        fx, fy = zip(*s.front(), strict=True) if s.front() else ((), ())
        ax.plot(fx, fy, drawstyle="steps-post", color=color, lw=1.8, label=f"{name}: front", gid=f"front:{s.sweep}")
        ax.scatter(fx, fy, marker=marker, facecolor=color, edgecolor="black", linewidths=1.0, s=46, zorder=3,
                   gid=f"front-points:{s.sweep}")
        label_all, labelled = len(s.x) <= MAX_LABELLED, 0
        for x, y, lab, f in zip(s.x, s.y, s.labels, s.on_front, strict=True):
            if (label_all or f) and labelled < MAX_FRONT_LABELS:
                ax.annotate(lab, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=6, color=color)
                labelled += 1
    xs = [x for s in series for x in s.x]
    if not xs:
        empty_note(ax, "no final results with both coordinates yet")
    elif min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(label_of(options.x))
    ax.set_ylabel(f"{label_of(options.metric)}, {options.attack}" if options.metric == "robust_acc"
                  else label_of(options.metric))  # fmt: skip
    direction = "higher" if options.metric in MAXIMIZED else "lower"
    dropped = sum(s.dropped for s in series)
    ax.set_title(f"Pareto front: fewer {options.x}, {direction} {options.metric} ({options.checkpoint} checkpoint)"
                 + (f"; {dropped} row(s) without values left out" if dropped else ""), fontsize=9)
    if xs:
        ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return fig


def pareto_figure(session: Session, *, sweep_refs: list[int | str], options: PlotOptions) -> Figure:
    return draw_pareto(pareto_series(session, sweep_refs=sweep_refs, options=options), options)

