"""The trials a post-hoc evaluation re-attacks by default: the Pareto front of parameters (fewer is better) vs robust
accuracy (more is better) under the sweep's reference attack, widened by the trials within two standard errors of it.

A trial is on the widened front when no front trial beats it by more than `sigmas` combined binomial standard
errors: for every front row f that dominates row d (params_f <= params_d, robust_f > robust_d),
robust_f - robust_d <= sigmas * sqrt(se_f^2 + se_d^2), with se = sqrt(p (1 - p) / n_total) from the stored counts.
Parameters are exact, so only the accuracy carries noise. A front is taken per threat model (eps, norm): robust
accuracies at different radii are not comparable. Read by service.evaluation (the API and the CLI) and by
workers.posthoc (the `standard` preset's evaluation at the end of a sweep), so both choose the same trials.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy.orm import Session

from db.contract import DEFAULT_ATTACK
from db.pareto import pareto_mask
from db.results import query_columns

FRONT_SIGMAS = 2.0  # a trial behind the front by less than this many combined standard errors is evaluated too


def widened_front_mask(params: Sequence[float], robust: Sequence[float], n_total: Sequence[int],
                       sigmas: float = FRONT_SIGMAS) -> np.ndarray:
    """(N,) bool: rows on the Pareto front of (params min, robust max) or within `sigmas` combined binomial
    standard errors of a front row that dominates them. robust in [0, 1], n_total >= 1 (test-set counts)."""
    p = np.asarray(params, dtype=float)
    r = np.asarray(robust, dtype=float)
    n = np.asarray(n_total, dtype=float)
    if not len(p) == len(r) == len(n):
        raise ValueError(f"params ({len(p)}), robust ({len(r)}) and n_total ({len(n)}) differ in length")
    if len(p) == 0:
        return np.zeros(0, dtype=bool)
    if (n < 1).any() or np.isnan(n).any():
        raise ValueError("n_total: every row needs a test-set count >= 1 to derive its standard error")
    se = np.sqrt(np.clip(r * (1 - r), 0, None) / n)  # (N,)
    front = pareto_mask(np.stack([p, r], axis=1), [False, True])
    keep = front.copy()
    for d in np.flatnonzero(~front):
        dominators = front & (p <= p[d]) & (r > r[d])  # (N,) the front rows that dominate d
        gap = r[dominators] - r[d]
        keep[d] = bool(np.all(gap <= sigmas * np.sqrt(se[dominators] ** 2 + se[d] ** 2)))
    return keep


def front_trials(session: Session, *, sweep_id: int, attack: str = DEFAULT_ATTACK, checkpoint: str = "best",
                 eps: Sequence[float] | None = None, sigmas: float = FRONT_SIGMAS) -> tuple[list[int], int]:
    """(trial ids on the widened front, in id order; the number of trials with a usable row). One front per
    (eps, norm) group of the sweep's `checkpoint` rows under `attack`; `eps` keeps only those radii. Rows without
    counts or robust accuracy are left out (a failed or unfinished trial is not on any front)."""
    filters: dict[str, object] = {"sweep": sweep_id, "attack": attack, "checkpoint": checkpoint}
    if eps is not None:
        filters["eps"] = list(eps)
    cols = query_columns(session, fields=["trial", "params", "eps", "norm", "robust_acc", "n_total"],
                         filters=filters, kind="final")
    rows = [r for r in zip(cols["trial"], cols["params"], cols["eps"], cols["norm"], cols["robust_acc"],
                           cols["n_total"], strict=True) if r[4] is not None and r[5]]
    chosen: set[int] = set()
    for group in {(round(r[2], 9), r[3]) for r in rows}:
        g = [r for r in rows if (round(r[2], 9), r[3]) == group]
        mask = widened_front_mask([r[1] for r in g], [r[4] for r in g], [r[5] for r in g], sigmas)
        chosen |= {r[0] for r, m in zip(g, mask, strict=True) if m}
    return sorted(chosen), len({r[0] for r in rows})
