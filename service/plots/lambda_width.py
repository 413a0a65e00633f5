"""The lambda x width table of the width study (science.md, Study B) as lines: a metric (robust accuracy by
default) against lambda, one line per (method, widths), the mean over seeds with its standard error."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from matplotlib.figure import Figure
from sqlalchemy.orm import Session

from service.plots.common import (
    MAX_SERIES,
    PlotOptions,
    empty_note,
    final_rows,
    label_of,
    mean_and_se,
    new_figure,
    resolve_sweep,
    row_se,
)


@dataclass
class WidthLine:
    method: str
    widths: str
    lam: list[float]  # ascending
    value: list[float]  # mean over the rows (seeds) at that lambda
    se: list[float | None]

    @property
    def label(self) -> str:
        return f"{self.method} w{self.widths}"


def _width_key(widths: str) -> tuple[float, ...]:
    try:
        return tuple(float(w) for w in widths.split("-"))
    except ValueError:
        return (float("inf"),)


def width_lines(session: Session, *, sweep_ref: int | str, options: PlotOptions) -> list[WidthLine]:
    """Lines sorted by method, then width (numerically). Rows without a lambda (an imported reference that states
    none) have no place on the x axis and are left out."""
    sweep = resolve_sweep(session, sweep_ref)
    cells: dict[tuple[str, str], dict[float, list[tuple[float, float | None]]]] = defaultdict(lambda: defaultdict(list))
    for r in final_rows(session, sweep=sweep, options=options):
        if r[options.metric] is not None and r["lam"] is not None:
            cells[(r["method"], r["widths"])][float(r["lam"])].append((float(r[options.metric]),
                                                                       row_se(r, options.metric)))
    out = []
    for (method, widths), by_lam in sorted(cells.items(), key=lambda kv: (kv[0][0], _width_key(kv[0][1]))):
        lams = sorted(by_lam)
        stats = [mean_and_se([v for v, _ in by_lam[lam]], [s for _, s in by_lam[lam]]) for lam in lams]
        out.append(WidthLine(method=method, widths=widths, lam=lams, value=[m for m, _ in stats],
                             se=[s for _, s in stats]))
    return out


def draw_lambda_width(lines: list[WidthLine], options: PlotOptions) -> Figure:
    """One errorbar line per WidthLine, labelled `<method> w<widths>` (the legend's texts)."""
    fig = new_figure(7.0, 4.6)
    ax = fig.add_subplot()
    hidden = max(len(lines) - MAX_SERIES, 0)
    lines = lines[:MAX_SERIES]  # beyond, a legend is unreadable and drawing it slow; the title counts the rest
    for line in lines:
        yerr = None if any(s is None for s in line.se) else line.se
        ax.errorbar(line.lam, line.value, yerr=yerr, marker="o", ms=4, capsize=2, label=line.label)
    if lines:
        ax.legend(fontsize=7, title="method, widths", title_fontsize=7)
    else:
        empty_note(ax, f"no final rows with {options.metric} and a lambda")
    ax.set_xlabel("lambda (robust-regularisation weight)")
    ax.set_ylabel(label_of(options.metric))
    ax.set_title(f"{options.metric} vs lambda per width ({options.checkpoint} checkpoint, {options.attack}; "
                 "mean over seeds ± s.e.)" + (f"; the first {MAX_SERIES} lines, {hidden:,} more not drawn"
                                             if hidden else ""), fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def lambda_width_figure(session: Session, *, sweep_ref: int | str, options: PlotOptions) -> Figure:
    return draw_lambda_width(width_lines(session, sweep_ref=sweep_ref, options=options), options)
