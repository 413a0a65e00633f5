"""The Pareto front and its noise marks at scale: identical rows are computed once, two metrics with one exact take a
sorted sweep, and everything equals the all-pairs definition (the previous implementation, kept here as the
reference) on random data full of ties, duplicates and unknown standard errors. Work is asserted by structure
(the all-pairs check is never reached), not by time."""

from __future__ import annotations

import random

import numpy as np
import pytest

from db import stats
from db.pareto import FrontTooLarge, pareto_mask
from db.stats import noise_marks

WITHIN = stats._within  # one front point against every row, as noise_marks' docstring defines it


def reference_front(values: np.ndarray, maximize: list[bool]) -> np.ndarray:
    """All pairs: a row is on the front when no row is at least as good everywhere and better somewhere."""
    g = values * np.where(maximize, 1.0, -1.0)
    return np.array([not np.any(np.all(g >= r, axis=1) & np.any(g > r, axis=1)) for r in g], dtype=bool)


def reference_marks(values: np.ndarray, ses: np.ndarray, maximize: list[bool], on_front: np.ndarray,
                    exact: list[bool], sigmas: float = 2.0) -> list[bool | None]:
    """noise_marks as it was: every front row against every row (O(front x N))."""
    good = values * np.where(maximize, 1.0, -1.0)
    exact_m = np.asarray(exact)
    out = []
    for f in np.flatnonzero(on_front):
        gap = good[f] - good
        band = sigmas * np.sqrt(ses[f] ** 2 + ses**2)
        others = np.arange(len(values)) != f
        out.append(WITHIN(gap, band, exact_m, others))
    return out


def _random_rows(rng: random.Random, n: int, metrics: int, exact: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Parameters from 5 values, accuracies k/20 of 50 / 400 / 10,000 images or of unknown counts (NaN SE)."""
    values, ses = np.zeros((n, metrics)), np.zeros((n, metrics))
    for i in range(n):
        count = rng.choice([50, 400, 10_000, None])
        for j in range(metrics):
            if exact[j]:
                values[i, j] = rng.choice([1, 2, 3, 5, 8]) * 1000
            else:
                p = rng.randint(0, 20) / 20
                values[i, j], ses[i, j] = p, np.nan if count is None else np.sqrt(p * (1 - p) / count)
    dup = rng.sample(range(n), n // 3)  # a third of the rows copied over others: exact duplicates
    if dup:
        values[dup], ses[dup] = values[dup[0]], ses[dup[0]]
    return values, ses


@pytest.mark.parametrize(("exact", "maximize"), [
    ([True, False], [False, True]), ([False, True], [True, False]), ([True, False], [True, True]),
    ([False, False], [True, True]), ([True, True], [False, False]), ([True, False, False], [False, True, True]),
])
@pytest.mark.parametrize("seed", range(6))
def test_front_and_marks_equal_the_all_pairs_definition(exact: list[bool], maximize: list[bool], seed: int) -> None:
    rng = random.Random(seed)
    values, ses = _random_rows(rng, rng.choice([1, 2, 30, 200]), len(exact), exact)
    front = pareto_mask(values, maximize)
    assert front.tolist() == reference_front(values, maximize).tolist()
    assert noise_marks(values, ses, maximize, front, exact=exact) == reference_marks(values, ses, maximize, front,
                                                                                     exact)


def test_20000_identical_rows_are_one_point_and_mark_like_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """20,000 identical rows (the 6,500 imported ones took 5.8 s per /pareto) among a few others: all are on the
    front, each marked as the single copy is; the all-pairs loop never runs."""
    few = np.array([[46e6, 0.5], [46e6, 0.5], [30e6, 0.49], [60e6, 0.7], [10e6, 0.2]])
    few_se = np.array([[0, 0.005], [0, 0.005], [0, 0.005], [0, np.nan], [0, 0.004]])
    many = np.concatenate([np.repeat(few[:1], 20_000, axis=0), few[1:]])
    many_se = np.concatenate([np.repeat(few_se[:1], 20_000, axis=0), few_se[1:]])
    monkeypatch.setattr(stats, "_within", lambda *a: pytest.fail("the all-pairs check ran"))
    front = pareto_mask(many, [False, True])
    marks = noise_marks(many, many_se, [False, True], front, exact=[True, False])
    assert int(front.sum()) == 20_000 + 4
    want = reference_marks(few, few_se, [False, True], reference_front(few, [False, True]), [True, False])
    # the twins: 0.49 is within 2 SE behind them; 0.49 and 0.2: nothing within noise behind; 0.7: no counts
    assert want == [True, True, False, None, False]
    assert marks == [want[0]] * 20_000 + want[1:]


def test_a_100000_point_staircase_is_swept_not_paired(monkeypatch: pytest.MonkeyPatch) -> None:
    """100,000 distinct rows all on the front (params and accuracy rising together): the sweep's hull, never the
    10^10 pairs; adjacent points 1e-5 apart at 10,000 images are within noise, so every point is marked."""
    n = 100_000
    values = np.stack([np.arange(n) + 1.0, np.linspace(0.1, 0.9, n)], axis=1)
    ses = np.stack([np.zeros(n), np.sqrt(values[:, 1] * (1 - values[:, 1]) / 10_000)], axis=1)
    monkeypatch.setattr(stats, "_within", lambda *a: pytest.fail("the all-pairs check ran"))
    front = pareto_mask(values, [False, True])
    assert front.all()
    marks = noise_marks(values, ses, [False, True], front, exact=[True, False])
    assert marks[0] is False and all(m is True for m in marks[1:])  # the first has nothing behind it


def test_other_fronts_past_the_work_bound_are_refused_not_computed() -> None:
    """Two noisy metrics (or three metrics) over 20,000 distinct front points: FrontTooLarge (a 422 at the API)
    instead of 4 * 10^8 comparisons."""
    n = 20_000
    values = np.stack([np.linspace(0.1, 0.9, n), np.linspace(0.9, 0.1, n)], axis=1)  # a trade-off: all on the front
    ses = np.full((n, 2), 0.004)
    front = pareto_mask(values, [True, True])
    assert front.all()
    with pytest.raises(FrontTooLarge, match="noise check of 20,000 front points"):
        noise_marks(values, ses, [True, True], front, exact=[False, False])
    three = np.stack([values[:, 0], values[:, 1], np.linspace(1, 2, n)], axis=1)
    with pytest.raises(FrontTooLarge, match="20,000 distinct points in 3 metrics"):
        pareto_mask(three, [True, True, False])
