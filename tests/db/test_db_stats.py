"""db.stats: binomial standard errors from counts, seeds aggregated, and the Pareto noise marks, against numbers
worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from db.stats import aggregate_seeds, binomial_se, noise_marks, sort_rows, standard_errors, with_standard_errors


def test_binomial_se_is_sqrt_p_q_over_n() -> None:
    assert binomial_se(0.184, 500) == pytest.approx(math.sqrt(0.184 * 0.816 / 500))  # 0.01733
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert binomial_se(1.0, 100) == 0.0
    assert binomial_se(0.5, None) is None and binomial_se(None, 100) is None and binomial_se(0.5, 0) is None
    with pytest.raises(ValueError, match="fraction"):
        binomial_se(18.4, 100)


def test_row_standard_errors_use_n_total() -> None:
    row = {"clean_acc": 0.6, "robust_acc": 0.3, "stability": 0.5, "n_total": 100}
    assert standard_errors(row) == pytest.approx(
        {"clean_acc_se": math.sqrt(0.24 / 100), "robust_acc_se": math.sqrt(0.21 / 100), "stability_se": 0.05})
    epoch = with_standard_errors([{"clean_acc": 0.6, "robust_acc": None, "n_total": None}])[0]
    assert (epoch["clean_acc_se"], epoch["robust_acc_se"], epoch["stability_se"]) == (None, None, None)


def _row(seed: int, robust: float, n_robust: int, arch: str = "a") -> dict:
    return {"sweep": "s", "trial": seed + 10, "arch": arch, "depths": "1", "widths": "1", "params": 5, "macs": 50,
            "method": "sat", "lam": 1.0, "eps": 0.03, "norm": "linf", "dataset": "d", "n_train": None, "seed": seed,
            "checkpoint": "best", "epoch": 2 + seed, "attack": "pgd20", "clean_acc": 0.5, "robust_acc": robust,
            "stability": None, "n_total": 100, "n_correct": 50, "n_stable": None, "n_robust": n_robust,
            "emp_lipschitz_blocks": [1.0], "status": "completed", "error": None}


def test_aggregate_seeds_means_stds_and_pooled_counts() -> None:
    rows = [_row(0, 0.30, 30), _row(1, 0.34, 34), _row(2, 0.32, 32), _row(0, 0.9, 90, arch="b")]
    a, b = aggregate_seeds(rows)
    assert (a["arch"], a["n_seeds"], a["seeds"], b["n_seeds"]) == ("a", 3, [0, 1, 2], 1)
    assert a["robust_acc"] == pytest.approx(0.32) and a["robust_acc_std"] == pytest.approx(0.02)
    assert a["epoch"] == pytest.approx(3.0) and a["epoch_std"] == pytest.approx(1.0)
    assert (a["n_total"], a["n_robust"]) == (300, 96)
    assert a["robust_acc_se"] == pytest.approx(math.sqrt(0.32 * 0.68 / 300))
    assert b["robust_acc_std"] is None and a["stability"] is None and "emp_lipschitz_blocks" not in a
    assert "trial" not in a and "seed" not in a


def test_sort_rows_descending_with_none_last() -> None:
    rows = [{"x": 1, "y": 2}, {"x": None, "y": 1}, {"x": 3, "y": 1}, {"x": 1, "y": 1}]
    assert sort_rows(rows, [("x", True), ("y", False)]) == [
        {"x": 3, "y": 1}, {"x": 1, "y": 1}, {"x": 1, "y": 2}, {"x": None, "y": 1}]
    assert sort_rows(rows, [("x", False)])[-1]["x"] is None


def _marks(values: list[list[float]], ses: list[list[float]]) -> list[bool | None]:
    from db.pareto import pareto_mask

    v = np.array(values)
    mask = pareto_mask(v, [False, True])
    return noise_marks(v, np.array(ses), [False, True], mask)


def test_a_bigger_model_better_by_noise_only_is_marked() -> None:
    # (params, robust_acc): the 2M model is 0.01 better with SE 0.02 each -> 2 SE band = 0.0566: noise.
    assert _marks([[1e6, 0.50], [2e6, 0.51]], [[0, 0.02], [0, 0.02]]) == [False, True]
    # the same gap with SE 0.001 (band 0.00283) is real: a clean front
    assert _marks([[1e6, 0.50], [2e6, 0.51]], [[0, 0.001], [0, 0.001]]) == [False, False]


def test_advantage_over_a_dominated_neighbour_of_equal_size() -> None:
    # same params: the front point beats the other by 0.02 with SE 0.02 (band 0.0566) -> within noise
    assert _marks([[1e6, 0.52], [1e6, 0.50], [5e6, 0.10]], [[0, 0.02], [0, 0.02], [0, 0.02]]) == [True]
    # by 0.2 it is not
    assert _marks([[1e6, 0.70], [1e6, 0.50]], [[0, 0.02], [0, 0.02]]) == [False]


def test_advantage_over_a_bigger_dominated_neighbour_within_noise() -> None:
    # the demo's front: 77,850 params at 0.170 (SE 0.017) dominates 92,762 at 0.158 (SE 0.016): the 0.012 lead is
    # inside 2 combined SE (0.047), so the bigger model could be on the front: marked
    assert _marks([[77_850, 0.170], [92_762, 0.158]], [[0, 0.017], [0, 0.016]]) == [True]
    # a 0.2 lead over the bigger model is real
    assert _marks([[1e6, 0.70], [2e6, 0.50]], [[0, 0.02], [0, 0.02]]) == [False]


def test_unknown_standard_errors_give_none() -> None:
    nan = float("nan")
    assert _marks([[1e6, 0.50], [2e6, 0.51]], [[0, nan], [0, nan]]) == [False, None]
    with pytest.raises(ValueError, match="shape"):
        noise_marks(np.zeros((2, 2)), np.zeros((2, 3)), [False, True], np.array([True, False]))
