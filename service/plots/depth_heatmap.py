"""The depth grid (science.md, Study A) as heatmaps: stage depths D1 (rows) x D2 (columns), one panel per D3, the
cell colour any numeric metric of the final rows (mean over the rows sharing those depths, e.g. seeds)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from sqlalchemy.orm import Session

from db.contract import MAXIMIZED
from search_spaces.spec import SpecError
from service.plots.common import (
    MAX_HEATMAP_CELLS,
    PlotOptions,
    empty_note,
    final_rows,
    label_of,
    new_figure,
    resolve_sweep,
)


@dataclass
class DepthGrid:
    """`values[k]` is the (len(d1), len(d2)) grid of the panel D3 = d3[k]; NaN where no trial has those depths."""

    d1: list[int]
    d2: list[int]
    d3: list[int]
    values: list[np.ndarray]
    n_rows: int  # rows averaged into the grid
    n_cells: int  # cells with a value


def _depths(text: str) -> tuple[int, int, int]:
    parts = text.split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise SpecError("depths", f"a depth heatmap needs three stage depths D1-D2-D3, got {text!r}")
    d1, d2, d3 = (int(p) for p in parts)
    return d1, d2, d3


def depth_grid(session: Session, *, sweep_ref: int | str, options: PlotOptions) -> DepthGrid:
    sweep = resolve_sweep(session, sweep_ref)
    cells: dict[tuple[int, int, int], list[float]] = defaultdict(list)
    for r in final_rows(session, sweep=sweep, options=options):
        if r[options.metric] is not None:
            cells[_depths(r["depths"])].append(float(r[options.metric]))
    d1, d2, d3 = (sorted({k[i] for k in cells}) for i in range(3))
    if len(d1) * len(d2) * len(d3) > MAX_HEATMAP_CELLS:
        raise SpecError("depths", f"{len(d1)} x {len(d2)} x {len(d3)} depth configurations make more than "
                                  f"{MAX_HEATMAP_CELLS:,} heatmap cells; plot a sweep with fewer")
    at1, at2, at3 = ({d: i for i, d in enumerate(ds)} for ds in (d1, d2, d3))
    values = [np.full((len(d1), len(d2)), np.nan) for _ in d3]
    for (a, b, c), vals in cells.items():
        values[at3[c]][at1[a], at2[b]] = float(np.mean(vals))
    return DepthGrid(d1=d1, d2=d2, d3=d3, values=values, n_rows=sum(len(v) for v in cells.values()),
                     n_cells=len(cells))


def draw_depth_heatmap(grid: DepthGrid, options: PlotOptions) -> Figure:
    """One panel per D3 sharing one colour scale (a colour means the same value in every panel); each cell shows
    its value. Panel titles are `D3 = <d>`; each panel's image holds its grid (ax.images[0].get_array())."""
    n = max(len(grid.d3), 1)
    fig = new_figure(min(max(3.2 * n + 1.2, 6.0), 18.0), 3.6)
    axes = fig.subplots(1, n, squeeze=False)[0]
    if not grid.d3:
        empty_note(axes[0], f"no final rows with {options.metric} yet")
        return fig
    finite = np.concatenate([v[np.isfinite(v)] for v in grid.values])
    vmin, vmax = float(finite.min()), float(finite.max())
    cmap = "viridis" if options.metric in MAXIMIZED else "viridis_r"  # bright = better either way
    image = None
    for ax, d3, values in zip(axes, grid.d3, grid.values, strict=True):
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, origin="lower",
                          aspect="auto")
        ax.set_xticks(range(len(grid.d2)), [str(d) for d in grid.d2])
        ax.set_yticks(range(len(grid.d1)), [str(d) for d in grid.d1])
        ax.set_xlabel("D2 (blocks in stage 2)")
        ax.set_ylabel("D1 (blocks in stage 1)")
        ax.set_title(f"D3 = {d3}", fontsize=9)
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=6, color="white")
    fig.colorbar(image, ax=list(axes), label=label_of(options.metric), shrink=0.9)
    fig.suptitle(f"{options.metric} by stage depth ({options.checkpoint}, {options.attack}; "
                 f"{grid.n_rows} rows in {grid.n_cells} cells, mean per cell)", fontsize=9)
    return fig


def depth_heatmap_figure(session: Session, *, sweep_ref: int | str, options: PlotOptions) -> Figure:
    return draw_depth_heatmap(depth_grid(session, sweep_ref=sweep_ref, options=options), options)
