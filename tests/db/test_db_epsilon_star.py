"""eps* (interpolated from the grid) and its fast linear extrapolation, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from db.epsilon_star import epsilon_star, epsilon_star_fast

E = 1 / 255  # one pixel step, [0, 1] units


def test_bracketed_interpolation() -> None:
    # loss <= 1.0 up to 2/255 (0.8), > 1.0 at 4/255 (1.2): eps* = 2/255 + (1.0-0.8)/(1.2-0.8) * 2/255 = 3/255
    out = epsilon_star([0, 2 * E, 4 * E, 8 * E], [0.5, 0.8, 1.2, 2.0], r0=1.0)
    assert out["eps_star"] == pytest.approx(3 * E)
    assert (out["bracketed"], out["lower"], out["upper"], out["method"]) == (True, 2 * E, 4 * E, "interpolation")
    assert out["reason"] is None


def test_unsorted_input_is_sorted() -> None:
    out = epsilon_star([8 * E, 0, 4 * E, 2 * E], [2.0, 0.5, 1.2, 0.8], r0=1.0)
    assert out["eps_star"] == pytest.approx(3 * E) and (out["lower"], out["upper"]) == (2 * E, 4 * E)


def test_crossing_between_zero_and_first_point() -> None:
    # 0.9 at 0, 1.3 at 1/255: eps* = (1.0-0.9)/(1.3-0.9) * 1/255 = 0.25/255
    out = epsilon_star([0, E, 2 * E], [0.9, 1.3, 1.6], r0=1.0)
    assert out["eps_star"] == pytest.approx(0.25 * E) and out["bracketed"]


def test_exact_hit_on_a_grid_point() -> None:
    out = epsilon_star([0, 4 * E, 8 * E], [0.5, 1.0, 1.5], r0=1.0)
    assert out["eps_star"] == pytest.approx(4 * E) and (out["lower"], out["upper"]) == (4 * E, 8 * E)


def test_last_crossing_is_the_supremum() -> None:
    # non-monotone: above R0 at 2/255, back below at 4/255 (0.9), above at 8/255 (2.0):
    # eps* = 4/255 + (1.0-0.9)/(2.0-0.9) * 4/255
    out = epsilon_star([0, 2 * E, 4 * E, 8 * E], [0.5, 1.5, 0.9, 2.0], r0=1.0)
    assert out["eps_star"] == pytest.approx(4 * E + 0.1 / 1.1 * 4 * E)
    assert (out["lower"], out["upper"]) == (4 * E, 8 * E)


def test_not_bracketed_all_below() -> None:
    out = epsilon_star([0, 2 * E, 4 * E], [0.5, 0.6, 0.9], r0=1.0)
    assert (out["eps_star"], out["bracketed"], out["lower"], out["upper"]) == (None, False, 4 * E, None)
    assert "largest eps" in out["reason"]


def test_not_bracketed_all_above() -> None:
    out = epsilon_star([0, 2 * E, 4 * E], [1.1, 1.5, 2.0], r0=1.0)
    assert (out["eps_star"], out["bracketed"], out["lower"], out["upper"]) == (None, False, None, 0.0)
    assert "eps = 0" in out["reason"]


def test_single_clean_point() -> None:
    assert epsilon_star([0.0], [0.5], r0=1.0)["bracketed"] is False


@pytest.mark.parametrize(
    ("eps", "loss", "match"),
    [
        ([0, E], [0.5], "adv_train_loss"),
        ([E, 2 * E], [0.5, 1.5], "eps = 0"),
        ([], [], "eps"),
        ([0, E, E], [0.5, 1.0, 1.1], "duplicate"),
        ([0, -E], [0.5, 1.0], "eps"),
        ([0, E], [0.5, float("nan")], "adv_train_loss"),
    ],
)
def test_bad_input(eps, loss, match) -> None:
    with pytest.raises(ValueError, match=match):
        epsilon_star(eps, loss, r0=1.0)


def test_fast_exact_line_extrapolates() -> None:
    # loss = 0.6 + 20 * eps through the fine-tuning points -> loss == 1.0 at eps = 0.02 (beyond the points)
    eps = [1 * E, 2 * E, 3 * E]
    out = epsilon_star_fast(eps, [0.6 + 20 * e for e in eps], r0=1.0)
    assert out["eps_star"] == pytest.approx(0.02)
    assert out["slope"] == pytest.approx(20.0) and out["intercept"] == pytest.approx(0.6)
    assert (out["method"], out["bracketed"], out["n_points"], out["reason"]) == ("extrapolation", False, 3, None)
    assert (out["lower"], out["upper"]) == (1 * E, 3 * E)


def test_fast_matches_numpy_least_squares() -> None:
    rng = np.random.default_rng(0)
    eps = np.array([0.5, 1, 2, 3]) * E
    loss = 0.7 + 30 * eps + rng.normal(scale=0.01, size=4)
    slope, intercept = np.polyfit(eps, loss, 1)
    out = epsilon_star_fast(list(eps[::-1]), list(loss[::-1]), r0=0.9)
    assert out["slope"] == pytest.approx(slope) and out["intercept"] == pytest.approx(intercept)
    assert out["eps_star"] == pytest.approx((0.9 - intercept) / slope)
    assert out["bracketed"] == (eps.min() <= out["eps_star"] <= eps.max())


def test_fast_interpolates_when_inside_the_range() -> None:
    out = epsilon_star_fast([0, 4 * E], [0.5, 1.5], r0=1.0)
    assert out["eps_star"] == pytest.approx(2 * E) and out["bracketed"] is True


def test_fast_non_positive_slope_and_high_intercept() -> None:
    flat = epsilon_star_fast([E, 2 * E], [1.0, 0.9], r0=1.2)
    assert flat["eps_star"] is None and "slope" in flat["reason"] and flat["slope"] < 0
    high = epsilon_star_fast([E, 2 * E], [1.3, 1.4], r0=1.0)
    assert high["eps_star"] is None and "exceeds R0" in high["reason"]
    with pytest.raises(ValueError, match="2 distinct"):
        epsilon_star_fast([E], [1.0], r0=1.0)
    with pytest.raises(ValueError, match="adv_train_loss"):
        epsilon_star_fast([E, 2 * E], [1.0], r0=1.0)
