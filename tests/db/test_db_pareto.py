"""Pareto front (pure numpy) against a brute-force O(N^2) definition."""

from __future__ import annotations

import numpy as np
import pytest

from db.pareto import pareto_mask, pareto_rows


def brute_force(values: np.ndarray, maximize: list[bool]) -> np.ndarray:
    """Row i is on the front iff no row j is >= in every metric and > in one (after orienting to maximise)."""
    v = np.where(np.asarray(maximize), values, -values)  # (N, M)
    ge = np.all(v[:, None, :] >= v[None, :, :], axis=2)  # (N, N): ge[j, i] = row j >= row i everywhere
    gt = np.any(v[:, None, :] > v[None, :, :], axis=2)  # (N, N): gt[j, i] = row j > row i somewhere
    return ~np.any(ge & gt, axis=0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("m", [2, 3, 4])
def test_matches_brute_force_mixed_directions(seed: int, m: int) -> None:
    rng = np.random.default_rng(seed * 10 + m)
    values = rng.normal(size=(200, m))
    maximize = [bool(x) for x in rng.integers(0, 2, size=m)]
    mask = pareto_mask(values, maximize)
    assert mask.dtype == bool and mask.shape == (200,)
    np.testing.assert_array_equal(mask, brute_force(values, maximize))


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_with_ties(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    values = rng.integers(0, 4, size=(150, 3)).astype(float)  # many equal points and equal coordinates
    maximize = [True, False, seed % 2 == 0]
    np.testing.assert_array_equal(pareto_mask(values, maximize), brute_force(values, maximize))


def test_hand_example_params_vs_robust_accuracy() -> None:
    # (params: minimise, robust_acc: maximise)
    values = np.array([[1e6, 0.40], [2e6, 0.45], [2e6, 0.45], [3e6, 0.44], [1e6, 0.30], [5e6, 0.50]])
    np.testing.assert_array_equal(pareto_mask(values, [False, True]), [True, True, True, False, False, True])


def test_edge_cases() -> None:
    assert pareto_mask(np.zeros((0, 2)), [True, True]).shape == (0,)
    np.testing.assert_array_equal(pareto_mask(np.array([[1.0], [3.0], [3.0], [2.0]]), [True]),
                                  [False, True, True, False])  # fmt: skip
    np.testing.assert_array_equal(pareto_mask(np.ones((5, 2)), [True, False]), [True] * 5)
    with pytest.raises(ValueError, match="2-D"):
        pareto_mask(np.zeros(3), [True])
    with pytest.raises(ValueError, match="maximize"):
        pareto_mask(np.zeros((3, 2)), [True])
    with pytest.raises(ValueError, match="NaN"):
        pareto_mask(np.array([[np.nan, 1.0]]), [True, True])


def test_pareto_rows_drops_missing_and_keeps_order() -> None:
    rows = [
        {"trial": 1, "params": 10, "robust_acc": 0.4},
        {"trial": 2, "params": 20, "robust_acc": None},  # dropped
        {"trial": 3, "params": 5, "robust_acc": 0.3},
        {"trial": 4, "params": 30, "robust_acc": 0.35},  # dominated by 1
        {"trial": 5, "params": 40, "robust_acc": float("nan")},  # dropped
        {"trial": 6, "params": 50, "robust_acc": 0.5},
    ]
    front = pareto_rows(rows, ["params", "robust_acc"], [False, True])
    assert [r["trial"] for r in front] == [1, 3, 6]
    assert front[0] is rows[0]
    assert pareto_rows([], ["params"], [False]) == []
    with pytest.raises(ValueError, match="robust_accuracy"):
        pareto_rows(rows, ["params", "robust_accuracy"], [False, True])
    with pytest.raises(ValueError):
        pareto_rows(rows, ["params", "robust_acc"], [False])
