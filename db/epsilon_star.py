"""The critical attack strength eps* (science.md, Study C), as pure functions of (eps, adversarial training loss)
pairs and the clean model's test loss R0. eps in [0, 1] pixel units; losses in nats (cross-entropy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _points(eps: Sequence[float], adv_train_loss: Sequence[float]) -> list[tuple[float, float]]:
    if len(eps) != len(adv_train_loss):
        raise ValueError(f"adv_train_loss has {len(adv_train_loss)} values for {len(eps)} eps values")
    if len(eps) == 0:
        raise ValueError("eps is empty")
    pts = sorted((float(e), float(loss)) for e, loss in zip(eps, adv_train_loss, strict=True))
    if any(math.isnan(e) or e < 0 for e, _ in pts):
        raise ValueError("eps must be >= 0 and not NaN")
    if any(math.isnan(loss) for _, loss in pts):
        raise ValueError("adv_train_loss contains NaN")
    if len({e for e, _ in pts}) != len(pts):
        raise ValueError("eps has duplicate values (aggregate seeds before calling)")
    return pts


def _check_r0(r0: float) -> float:
    r0 = float(r0)
    if math.isnan(r0):
        raise ValueError("r0 is NaN")
    return r0


def epsilon_star(eps: Sequence[float], adv_train_loss: Sequence[float], r0: float) -> dict[str, Any]:
    """eps* = sup {eps : adv_train_loss(eps) <= r0}, by linear interpolation on the grid.

    The grid is sorted by eps and must contain eps = 0. Let i be the LAST grid point with loss <= r0:
    - i exists and is not the last point: bracketed by (eps_i, eps_{i+1}); eps* is where the segment between them
      reaches r0 (eps_i itself when loss_i == r0).
    - every point has loss <= r0 (i is the last point): not bracketed, eps* >= max eps; eps_star None,
      lower = max eps, upper None.
    - no point has loss <= r0 (already above R0 at eps = 0): not bracketed, eps* < the grid; eps_star None,
      lower None, upper = 0.
    Returns {eps_star, bracketed, lower, upper, method: "interpolation", reason (None when bracketed)}.
    """
    pts = _points(eps, adv_train_loss)
    r0 = _check_r0(r0)
    if pts[0][0] != 0.0:
        raise ValueError("eps must contain the clean point eps = 0")
    below = [k for k, (_, loss) in enumerate(pts) if loss <= r0]
    out: dict[str, Any] = {"eps_star": None, "bracketed": False, "lower": None, "upper": None,
                           "method": "interpolation", "reason": None}  # fmt: skip
    if not below:
        out.update(upper=pts[0][0], reason="adversarial training loss exceeds R0 at every eps, even eps = 0")
        return out
    i = below[-1]
    if i == len(pts) - 1:
        out.update(lower=pts[i][0], reason="adversarial training loss stays <= R0 up to the largest eps")
        return out
    (e0, l0), (e1, l1) = pts[i], pts[i + 1]  # l0 <= r0 < l1
    out.update(eps_star=e0 + (r0 - l0) * (e1 - e0) / (l1 - l0), bracketed=True, lower=e0, upper=e1)
    return out


def epsilon_star_fast(eps: Sequence[float], adv_train_loss: Sequence[float], r0: float) -> dict[str, Any]:
    """Fast eps*: least-squares line loss = intercept + slope * eps through the fine-tuning points (>= 2
    distinct eps), solved for loss == r0. eps_star is None with a reason when slope <= 0 or when the fitted loss
    at eps = 0 already exceeds r0. `bracketed` is True when eps* lies within the fitted eps range
    [lower, upper] (interpolated), False when extrapolated.
    Returns {eps_star, bracketed, lower, upper, slope, intercept, n_points, method: "extrapolation", reason}."""
    pts = _points(eps, adv_train_loss)
    r0 = _check_r0(r0)
    if len(pts) < 2:
        raise ValueError("eps needs at least 2 distinct values for a line fit")
    n = len(pts)
    me = sum(e for e, _ in pts) / n
    ml = sum(loss for _, loss in pts) / n
    sxx = sum((e - me) ** 2 for e, _ in pts)
    slope = sum((e - me) * (loss - ml) for e, loss in pts) / sxx
    intercept = ml - slope * me
    lo, hi = pts[0][0], pts[-1][0]
    out: dict[str, Any] = {"eps_star": None, "bracketed": False, "lower": lo, "upper": hi, "slope": slope,
                           "intercept": intercept, "n_points": n, "method": "extrapolation", "reason": None}  # fmt: skip
    if slope <= 0:
        out["reason"] = f"fitted slope {slope:.4g} <= 0: the loss does not grow with eps"
        return out
    e_star = (r0 - intercept) / slope
    if e_star < 0:
        out["reason"] = f"fitted loss at eps = 0 ({intercept:.4g}) already exceeds R0 ({r0:.4g})"
        return out
    out.update(eps_star=e_star, bracketed=lo <= e_star <= hi)
    return out
