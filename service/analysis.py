"""Questions asked of the store: Pareto fronts across sweeps, with the binomial standard errors of their points and
whether the front stands out from noise. Reads through db/, computes with db's pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from db.contract import DEFAULT_ATTACK, MAXIMIZED, NUMERIC_FIELDS
from db.models import FRONT_Y
from db.pareto import FrontTooLarge, pareto_mask
from db.results import front_candidates, query_columns, query_results
from db.stats import NOISE_SIGMAS, SE_METRICS, noise_marks, with_standard_errors
from search_spaces.spec import SpecError

# Metrics that are a configuration, not a measurement: exact (standard error 0) in the noise check.
EXACT_METRICS = frozenset({"params", "macs", "lam", "eps", "n_train", "seed", "epoch", "trial"})


@dataclass(frozen=True)
class ParetoReport:
    """The front's rows (result fields, SE_FIELDS, `within_noise`), the directions, and whether the front is
    within noise: True when some point's place on it rests on differences within two standard errors, None when
    that cannot be told (no counts to derive standard errors from), False otherwise; `note` says it in a sentence."""

    maximize: list[bool]
    front: list[dict[str, Any]]  # the first `limit` of the front's rows (by trial), or all of them
    front_within_noise: bool | None
    note: str
    n_rows: int  # rows the front was taken over
    front_keys: list[tuple[Any, Any, Any]]  # (trial, checkpoint, attack) of every front row, by trial


def _check(metrics: list[str], maximize: list[bool] | None) -> list[bool]:
    if len(metrics) < 2:
        raise SpecError("metrics", f"a Pareto front needs two or more metrics, got {metrics}")
    for m in metrics:
        if m not in NUMERIC_FIELDS:
            raise SpecError("metrics", f"{m!r} is not a numeric result field")
    if len(set(metrics)) != len(metrics):
        raise SpecError("metrics", f"a metric is named twice in {metrics}")
    if maximize is None:
        maximize = [m in MAXIMIZED for m in metrics]
    if len(maximize) != len(metrics):
        raise SpecError("maximize", f"{len(maximize)} directions for {len(metrics)} metrics")
    return maximize


def _ses(metrics: list[str], cols: dict[str, np.ndarray]) -> np.ndarray:
    """(N, M) standard errors: binomial for accuracies and stability (NaN without n_total), 0 for configuration
    fields, NaN (unknown) for other measurements (losses, Lipschitz estimates, times)."""
    n = cols["n_total"]
    out = []
    for m in metrics:
        if m in SE_METRICS:
            p = cols[m]
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.where(n >= 1, np.sqrt(np.clip(p * (1 - p), 0, None) / n), np.nan))
        else:
            out.append(np.zeros(len(n)) if m in EXACT_METRICS else np.full(len(n), np.nan))
    return np.stack(out, axis=1)


def pareto_report(session: Session, *, metrics: list[str], maximize: list[bool] | None,
                  filters: dict[str, Any], limit: int | None = None) -> ParetoReport:
    """Non-dominated final-result rows in `metrics` (two or more). Defaults: the best checkpoint and the studies'
    attack (pgd20); `filters` may name another checkpoint or attack key (attack=autoattack). For (an exact metric,
    an accuracy) the database selects the few rows the front and its noise check need (db.results.front_candidates);
    otherwise the metric columns of every row are read. Then the whole rows of the front (the first `limit` by
    trial), by key. Identical rows are computed once and two metrics with one exact take a sorted sweep
    (db.stats.noise_marks); other fronts too large to check in about a second raise SpecError naming `metric`."""
    maximize = _check(metrics, maximize)
    filters = {"checkpoint": "best", "attack": DEFAULT_ATTACK, **filters}
    fields = list(dict.fromkeys(["trial", "checkpoint", "attack", "n_total", *metrics]))
    if len(metrics) == 2 and metrics[0] in ("params", "macs") and metrics[1] in FRONT_Y:  # an index's order
        raw, n_rows = front_candidates(session, x=metrics[0], y=metrics[1], x_max=maximize[0], y_max=maximize[1],
                                       fields=fields, filters=filters, explain_empty=True)
    else:
        raw = query_columns(session, fields=fields, filters=filters, kind="final", explain_empty=True)
        n_rows = None
    cols = {f: np.array([np.nan if v is None else v for v in raw[f]], dtype=float)
            for f in fields if f not in ("checkpoint", "attack")}
    values = np.stack([cols[m] for m in metrics], axis=1) if raw["trial"] else np.zeros((0, len(metrics)))
    usable = ~np.isnan(values).any(axis=1)
    values, ses = values[usable], _ses(metrics, {f: c[usable] for f, c in cols.items()})
    exact = [m in EXACT_METRICS for m in metrics]
    try:
        mask = pareto_mask(values, maximize)
        marks = noise_marks(values, ses, maximize, mask, exact=exact) if len(values) else []
    except FrontTooLarge as e:
        raise SpecError("metric", str(e)) from None
    keys = [(raw["trial"][i], raw["checkpoint"][i], raw["attack"][i]) for i in np.flatnonzero(usable)[mask]]
    mark_of = dict(zip(keys, marks, strict=True))
    keys.sort(key=lambda k: (k[0], str(k[1]), str(k[2])))
    shown = keys if limit is None else keys[:limit]
    # the keys already met every filter: look the rows up by key alone (an index lookup per trial)
    by_key = {f: sorted({k[i] for k in shown}) for i, f in enumerate(("trial", "checkpoint", "attack"))}
    full = query_results(session, filters=by_key, kind="final") if shown else []
    wanted = set(shown)
    front = [r | {"within_noise": mark_of[(r["trial"], r["checkpoint"], r["attack"])]}
             for r in with_standard_errors(full) if (r["trial"], r["checkpoint"], r["attack"]) in wanted]
    return ParetoReport(maximize, front, *_verdict(marks), n_rows=int(usable.sum()) if n_rows is None else n_rows,
                        front_keys=keys)


def _verdict(marks: list[bool | None]) -> tuple[bool | None, str]:
    if not marks:
        return None, "No rows have both metrics: there is no front."
    noisy, unknown = sum(m is True for m in marks), sum(m is None for m in marks)
    if noisy:
        return True, (f"{noisy} of {len(marks)} front points differ from a neighbouring result by less than "
                      f"{NOISE_SIGMAS:g} standard errors, so their order on the front is within noise.")
    if unknown:
        return None, (f"{unknown} of {len(marks)} front points cannot be checked against noise: their rows have no "
                      f"test-set counts to derive standard errors from.")
    return False, f"Every front point stands out from its neighbours by more than {NOISE_SIGMAS:g} standard errors."


def pareto_front(
    session: Session, *, metrics: list[str], maximize: list[bool] | None, filters: dict[str, Any]
) -> tuple[list[bool], list[dict[str, Any]]]:
    """(directions, front rows) of `pareto_report`; each row also carries its standard errors and `within_noise`."""
    report = pareto_report(session, metrics=metrics, maximize=maximize, filters=filters)
    return report.maximize, report.front
