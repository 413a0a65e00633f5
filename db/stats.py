"""Statistical honesty of result rows: binomial standard errors from the stored counts, the mean and spread over
seeds, and which Pareto-front points stand out from their neighbours by less than two standard errors.

Pure functions, no storage. An accuracy or stability p measured on n test images has the binomial standard error
sqrt(p (1 - p) / n); a row without `n_total` (per-epoch rows, imported rows without counts) has no standard error
(None), never a made-up one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from db.contract import LIST_FIELDS
from db.pareto import MAX_WORK, FrontTooLarge

# Fractions with a binomial standard error and the count each is p * n_total of.
SE_METRICS: dict[str, str] = {"clean_acc": "n_correct", "robust_acc": "n_robust", "stability": "n_stable"}
SE_FIELDS: tuple[str, ...] = tuple(f"{m}_se" for m in SE_METRICS)  # appended after the contract's fields
NOISE_SIGMAS = 2.0  # an advantage within this many (combined) standard errors is noise


def binomial_se(p: float | None, n: int | None) -> float | None:
    """sqrt(p (1 - p) / n) for a fraction p of n trials; None when p or n is unknown or n < 1."""
    if p is None or n is None or n < 1 or (isinstance(p, float) and math.isnan(p)):
        return None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a fraction in [0, 1], got {p!r}")
    return math.sqrt(p * (1.0 - p) / n)


def standard_errors(row: dict[str, Any]) -> dict[str, float | None]:
    """{clean_acc_se, robust_acc_se, stability_se} of one result row, from its fraction and n_total."""
    return {f"{m}_se": binomial_se(row.get(m), row.get("n_total")) for m in SE_METRICS}


def with_standard_errors(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with SE_FIELDS appended (new dicts; the input is left alone)."""
    return [{**r, **standard_errors(r)} for r in rows]


# -------------------------------------------------------------------------------------------- seeds


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1) of the known values; std None for fewer than two."""
    known = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not known:
        return None, None
    mean = sum(known) / len(known)
    if len(known) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in known) / (len(known) - 1))


COUNT_FIELDS: tuple[str, ...] = ("n_total", "n_correct", "n_stable", "n_robust")
# A configuration across seeds: the rows that differ only in seed (and trial id) are one group.
GROUP_FIELDS: tuple[str, ...] = ("sweep", "arch", "depths", "widths", "params", "macs", "method", "lam", "eps",
                                 "norm", "dataset", "n_train", "checkpoint", "attack")  # fmt: skip


def aggregate_seeds(rows: Sequence[dict[str, Any]], *, kind: str = "final") -> list[dict[str, Any]]:
    """One row per configuration (GROUP_FIELDS, plus `epoch` for per-epoch rows) in order of first appearance:
    the group's fields, `n_seeds` and `seeds`, then for every other numeric field the mean over seeds (under its
    own name) and the sample standard deviation (`<field>_std`; None for one seed). Counts are summed (the
    pooled test set), so the standard errors (SE_FIELDS) are those of the pooled counts. `status` is the common
    status or `mixed`."""
    keys = GROUP_FIELDS + (("epoch",) if kind == "epoch" else ())
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    out = []
    for key, members in groups.items():
        agg: dict[str, Any] = dict(zip(keys, key, strict=True))
        seeds = sorted({m["seed"] for m in members if m.get("seed") is not None})
        agg |= {"n_seeds": len(seeds), "seeds": seeds}
        statuses = {m.get("status") for m in members}
        agg["status"] = statuses.pop() if len(statuses) == 1 else "mixed"
        for f in _metric_fields(members[0], keys):
            values = [m.get(f) for m in members]
            if f in COUNT_FIELDS:
                known = [int(v) for v in values if v is not None]
                agg[f] = sum(known) if known else None
                continue
            agg[f], agg[f"{f}_std"] = mean_std(values)
        out.append(agg | {f"{m}_se": binomial_se(agg.get(m), agg.get("n_total")) for m in SE_METRICS})
    return out


def _metric_fields(row: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    skip = {*keys, *LIST_FIELDS, "trial", "seed", "status", "error"}
    return [f for f, v in row.items() if f not in skip and not f.endswith("_se")
            and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))]


def sort_rows(rows: list[dict[str, Any]], sort: Sequence[tuple[str, bool]]) -> list[dict[str, Any]]:
    """Rows ordered by (field, descending) keys, None last in either direction (stable)."""
    out = list(rows)
    for field, desc in reversed(list(sort)):
        known = [r for r in out if r.get(field) is not None]
        missing = [r for r in out if r.get(field) is None]
        out = sorted(known, key=lambda r: r[field], reverse=desc) + missing
    return out


# -------------------------------------------------------------------------------------------- Pareto noise


def noise_marks(values: np.ndarray, ses: np.ndarray, maximize: Sequence[bool], on_front: np.ndarray,
                sigmas: float = NOISE_SIGMAS, exact: Sequence[bool] | None = None,
                max_work: int | None = MAX_WORK) -> list[bool | None]:
    """For each front point (in row order of `values[on_front]`): whether its place on the front rests on
    differences within `sigmas` combined standard errors.

    `values` (N, M) are the rows' metrics, `ses` (N, M) their standard errors (0 for an exact metric such as
    params or macs, NaN where unknown), `on_front` (N,) the Pareto mask. The combined standard error of a
    difference between rows a and b in metric j is sqrt(se_aj^2 + se_bj^2). A front point f is within noise when

    - (advantage over a dominated neighbour) some row d that f dominates (d no better in any metric: the same or
      more parameters, the same or lower accuracy) is behind it in every noisy metric by less than `sigmas` combined
      standard errors: f beats d only by noise, so d, moved within its noise, would join the front;
    - or (noise-dominated) some other row g is at least as good as f in every exact metric and behind it in each
      noisy metric by less than `sigmas` combined standard errors: g, moved within its noise, would dominate f
      (a bigger model whose accuracy is higher by noise only).

    A row identical to f does not count. None (unknown) when only rows with an unknown (NaN) standard error could
    make f noise. `exact` (M,) names the exact metrics; by default those whose standard error is 0 in every row
    (callers that know the metrics' kinds pass it: an accuracy of exactly 0 or 1 has a standard error of 0 but is
    still a measurement).

    Cost: identical rows are one; one exact and one noisy metric (the usual front) take O(N log N)
    (_one_noisy_marks); otherwise distinct front points x distinct rows comparisons, FrontTooLarge past `max_work`.
    """
    v = np.asarray(values, dtype=float)
    se = np.asarray(ses, dtype=float)
    if v.shape != se.shape or v.ndim != 2:
        raise ValueError(f"values {v.shape} and ses {se.shape} must be the same (N, M) shape")
    sign = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)  # everything maximised below
    exact_m = np.all(se == 0, axis=0) if exact is None else np.asarray(exact, dtype=bool)  # (M,)
    if exact_m.shape != (v.shape[1],):
        raise ValueError(f"exact {exact_m.shape} must name each of the {v.shape[1]} metrics")
    front_rows = np.flatnonzero(on_front)
    if len(front_rows) == 0:
        return []
    # Rows with the same values and standard errors get the same mark, and a row never counts against one with
    # its values: the marks are computed once per distinct (values, standard errors) row (NaN keyed as -1).
    keyed = np.concatenate([v * sign, np.where(np.isnan(se), -1.0, se)], axis=1)
    distinct, first, inverse = np.unique(keyed, axis=0, return_index=True, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    good, dse = distinct[:, : v.shape[1]], se[first]  # (K, M) each
    fronts = np.unique(inverse[front_rows])  # distinct rows on the front
    if v.shape[1] == 2 and exact_m.sum() == 1:
        marks = _one_noisy_marks(good, dse, int(np.flatnonzero(~exact_m)[0]), fronts, sigmas)
    else:
        if max_work is not None and len(fronts) * len(good) > max_work:
            raise FrontTooLarge(f"the noise check of {len(fronts):,} front points against {len(good):,} distinct "
                                f"rows needs more than {max_work:,} comparisons; filter the rows (e.g. sweep=) "
                                f"or put params or macs on one axis")
        marks = {}
        for f in fronts:
            gap = good[f] - good  # (K, M): f's advantage over every distinct row
            band = sigmas * np.sqrt(dse[f] ** 2 + dse**2)  # (K, M), NaN where unknown
            marks[int(f)] = _within(gap, band, exact_m, np.arange(len(good)) != f)
    return [marks[int(inverse[f])] for f in front_rows]


def _one_noisy_marks(good: np.ndarray, se: np.ndarray, noisy: int, fronts: np.ndarray,
                     sigmas: float) -> dict[int, bool | None]:
    """noise_marks for two metrics, one exact and one noisy (parameters vs an accuracy), in O(K log K) over K
    distinct rows (`good`: maximised values, `se`: standard errors, NaN unknown; `fronts`: the front's rows).

    For a front point f every row d with a different value that is at most as good in the noisy metric y is a
    candidate (f dominates it, or d has at least f's exact value and, f being on the front, a lower y), and no
    other row is. So f is within noise iff some row with f's y has another exact value, or some row below it has
    (y_f - y_d)^2 - sigmas^2 se_d^2 <= sigmas^2 se_f^2: the lower envelope of the parabolas of the rows below,
    kept as a convex hull of lines while sweeping y upwards (slopes -2 y_d decrease, queries y_f increase).
    Unknown (None) when no such row proves it but a candidate's band is unknown (its or f's standard error)."""
    y, sy, x = good[:, noisy], se[:, noisy], good[:, 1 - noisy]
    order = np.argsort(y, kind="stable")
    ys = y[order]
    below_of = np.searchsorted(ys, y, side="left")  # (K,) rows strictly below each row's y
    pairs = np.unique(np.stack([y, x], axis=1), axis=0)  # distinct (y, x)
    levels, n_x = np.unique(pairs[:, 0], return_counts=True)
    shared = n_x[np.searchsorted(levels, y)] > 1  # (K,) another row has this y and another exact value
    nan_below = np.concatenate([[0], np.cumsum(np.isnan(sy[order]))]).tolist()  # unknown SEs below a position
    known = ~np.isnan(sy)
    # per sorted row, its line of the envelope: slope -2 y_d, intercept y_d^2 - sigmas^2 se_d^2 (Python floats)
    slopes, icepts = (-2.0 * ys).tolist(), (ys * ys - sigmas * sigmas * np.nan_to_num(sy[order]) ** 2).tolist()
    ok_sorted, rows_sorted = known[order].tolist(), order.tolist()
    yl, syl, below_l, shared_l, known_l = y.tolist(), sy.tolist(), below_of.tolist(), shared.tolist(), known.tolist()
    hull: list[tuple[float, float, int]] = []  # lines (slope, intercept, row): min of slope * t + intercept
    added, head, out = 0, 0, {}
    for f in sorted(fronts.tolist(), key=yl.__getitem__):
        t, below = yl[f], below_l[f]
        while added < below:  # every row strictly below t joins the envelope (known standard errors only)
            if ok_sorted[added]:
                head = _add_line(hull, head, slopes[added], icepts[added], rows_sorted[added])
            added += 1
        if shared_l[f]:
            out[f] = True
            continue
        if known_l[f] and hull:
            while head + 1 < len(hull) and _at(hull[head + 1], t) <= _at(hull[head], t):
                head += 1
            d = hull[head][2]
            if t - yl[d] <= sigmas * math.sqrt(syl[f] ** 2 + syl[d] ** 2):  # the best row, as the definition says
                out[f] = True
                continue
        out[f] = None if nan_below[below] > 0 or (not known_l[f] and below > 0) else False
    return out


def _at(line: tuple[float, float, int], t: float) -> float:
    return line[0] * t + line[1]


def _add_line(hull: list[tuple[float, float, int]], head: int, slope: float, intercept: float, row: int) -> int:
    """Append a line of a slope <= every slope in `hull` (lower envelope, queries increasing); returns the query
    pointer, kept within the hull."""
    if hull and hull[-1][0] == slope:
        if hull[-1][1] <= intercept:
            return head
        hull.pop()
    while len(hull) >= 2:
        (a1, b1, _), (a2, b2, _) = hull[-2], hull[-1]
        # the last line is useless when the new one undercuts it before it undercuts the one before it
        if (b2 - b1) * (a1 - slope) >= (intercept - b1) * (a1 - a2):
            hull.pop()
        else:
            break
    hull.append((slope, intercept, row))
    return min(head, len(hull) - 1)


def _within(gap: np.ndarray, band: np.ndarray, exact: np.ndarray, others: np.ndarray) -> bool | None:
    """One front point's mark (see noise_marks); gap (its advantage) and band are (N, M) against every row."""
    with np.errstate(invalid="ignore"):
        distinct = others & ~np.all(gap == 0, axis=1)
        dominated = distinct & np.all(gap >= 0, axis=1)  # (N,): rows f dominates
        candidate = (distinct & np.all(~exact | (gap <= 0), axis=1)) | dominated  # (N,)
        behind_ok = (gap <= 0) | (gap <= band)  # (N, M): False where the band is NaN and the point is ahead
        noisy_ok = np.all(exact | behind_ok, axis=1)
        noisy_maybe = np.all(exact | behind_ok | np.isnan(band), axis=1)
    if np.any(candidate & noisy_ok):
        return True
    if np.any(candidate & noisy_maybe):
        return None
    return False
