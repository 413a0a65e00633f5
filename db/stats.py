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
                sigmas: float = NOISE_SIGMAS, exact: Sequence[bool] | None = None) -> list[bool | None]:
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
    """
    v = np.asarray(values, dtype=float)
    se = np.asarray(ses, dtype=float)
    if v.shape != se.shape or v.ndim != 2:
        raise ValueError(f"values {v.shape} and ses {se.shape} must be the same (N, M) shape")
    sign = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)  # everything maximised below
    good = v * sign  # (N, M)
    exact_m = np.all(se == 0, axis=0) if exact is None else np.asarray(exact, dtype=bool)  # (M,)
    if exact_m.shape != (v.shape[1],):
        raise ValueError(f"exact {exact_m.shape} must name each of the {v.shape[1]} metrics")
    marks: list[bool | None] = []
    for f in np.flatnonzero(on_front):
        gap = good[f] - good  # (N, M): f's advantage over every row
        band = sigmas * np.sqrt(se[f] ** 2 + se**2)  # (N, M), NaN where unknown
        others = np.arange(len(v)) != f
        marks.append(_within(gap, band, exact_m, others))
    return marks


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
