"""Pareto fronts as plain numpy (no storage): which rows are not dominated in two or more metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_WORK = 20_000_000  # point comparisons a front or its noise check may take (about a second of numpy)


class FrontTooLarge(ValueError):
    """A front (or its noise check) that would take more than MAX_WORK comparisons: only hostile or pathological
    data (tens of thousands of distinct points all on a front of three or more metrics) gets here."""


def pareto_mask(values: np.ndarray, maximize: Sequence[bool], max_work: int | None = MAX_WORK) -> np.ndarray:
    """Boolean mask (N,) of the non-dominated rows of `values` (N, M); column j is maximised if maximize[j].

    Row a dominates row b when a is at least as good in every metric and strictly better in one. Equal rows do
    not dominate each other, so duplicates of a front point are all kept. Two metrics: O(N log N) (a sort and a
    running minimum); more: O(N log N + distinct rows * front size), and FrontTooLarge past `max_work` of that.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2:
        raise ValueError(f"values must be 2-D (N, M), got shape {v.shape}")
    n, m = v.shape
    if len(maximize) != m:
        raise ValueError(f"maximize has {len(maximize)} entries for {m} metrics")
    if n == 0:
        return np.zeros(0, dtype=bool)
    if np.isnan(v).any():
        raise ValueError("values contain NaN")
    loss = np.where(np.asarray(maximize, dtype=bool), -v, v)  # (N, M), everything minimised
    unique, inverse = np.unique(loss, axis=0, return_inverse=True)  # lexicographically sorted, distinct
    inverse = np.asarray(inverse).reshape(-1)
    if m == 2:
        # A distinct point is dominated exactly by a point sorted before it with a second coordinate <= its own
        # (before it: a smaller first coordinate, or the same first and a smaller second), so it is on the front
        # iff its second coordinate is below the running minimum of those before it.
        before = np.concatenate([[np.inf], np.minimum.accumulate(unique[:-1, 1])])
        return (unique[:, 1] < before)[inverse]
    # The lexicographically first remaining point is never dominated by a remaining one (a dominator would sort
    # before it), so it is on the front; drop every point it dominates and repeat.
    on_front = np.zeros(len(unique), dtype=bool)
    idx = np.arange(len(unique))
    rest, work = unique, 0
    while len(rest):
        on_front[idx[0]] = True
        work += len(rest)
        if max_work is not None and work > max_work:
            raise FrontTooLarge(f"the front of {len(unique):,} distinct points in {m} metrics needs more than "
                                f"{max_work:,} comparisons; filter the rows (e.g. sweep=) or ask for two metrics")
        keep = np.any(rest < rest[0], axis=1)  # not dominated by rest[0] (distinct points: no all-equal row)
        rest, idx = rest[keep], idx[keep]
    return on_front[inverse]


def pareto_rows(rows: list[dict[str, Any]], metrics: list[str], maximize: list[bool]) -> list[dict[str, Any]]:
    """The rows on the Pareto front of `metrics` (in their original order); rows with None or NaN in any of those
    metrics are dropped first. A metric that no row has -> ValueError naming it."""
    if not metrics:
        raise ValueError("metrics must not be empty")
    if len(metrics) != len(maximize):
        raise ValueError(f"metrics ({len(metrics)}) and maximize ({len(maximize)}) differ in length")
    for name in metrics:
        if rows and not any(name in r for r in rows):
            raise ValueError(f"unknown metric {name!r}: no row has it")

    def ok(x: Any) -> bool:
        return x is not None and not (isinstance(x, float) and math.isnan(x))

    usable = [r for r in rows if all(ok(r.get(name)) for name in metrics)]
    if not usable:
        return []
    values = np.array([[float(r[name]) for name in metrics] for r in usable])
    mask = pareto_mask(values, maximize)
    return [r for r, on in zip(usable, mask, strict=True) if on]
