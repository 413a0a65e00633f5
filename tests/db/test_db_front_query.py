"""db.results.front_candidates: the few rows a 2-D Pareto front and its noise check need, selected in SQL, give the
same front and the same noise marks as every row does. The reference is an O(N^2) brute force written from the
definition (db.stats.noise_marks' docstring), not the production functions."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.contract import FinalRow
from db.pareto import pareto_mask
from db.results import front_candidates, query_columns, upsert_final
from db.stats import noise_marks
from db.sweeps import create_sweep

FIELDS = ["trial", "checkpoint", "attack", "n_total"]


def _se(p: float, n: int | None) -> float:
    return math.sqrt(p * (1 - p) / n) if n is not None and n >= 1 else math.nan


def brute(rows: list[tuple[Any, ...]], x_max: bool, y_max: bool) -> dict[tuple[Any, ...], bool | None]:
    """{(trial, checkpoint, attack): mark} for the front of rows (key..., n_total, x, y). A front point f is noise
    when another row d with different (x, y) and y no better (0 <= gap = f's advantage in y) has gap <= 2 sqrt(se_f^2
    + se_d^2), or gap == 0; unknown (None) when, short of that, such a d exists whose band is unknown."""
    sx, sy = (1 if x_max else -1), (1 if y_max else -1)
    pts = [(r[:3], sx * r[4], sy * r[5], _se(r[5], r[3])) for r in rows if r[4] is not None and r[5] is not None]
    front = [p for p in pts if not any(q[1] >= p[1] and q[2] >= p[2] and (q[1] > p[1] or q[2] > p[2]) for q in pts)]
    out: dict[tuple[Any, ...], bool | None] = {}
    for key, fx, fy, fse in front:
        mark: bool | None = False
        for _, dx, dy, dse in pts:
            gap = fy - dy
            if (dx, dy) == (fx, fy) or gap < 0:
                continue
            band = 2 * math.sqrt(fse**2 + dse**2)
            if gap == 0 or gap <= band:
                mark = True
                break
            if math.isnan(band):
                mark = None
        out[key] = mark
    return out


def from_candidates(cols: dict[str, list[Any]], x: str, y: str, x_max: bool, y_max: bool
                    ) -> dict[tuple[Any, ...], bool | None]:
    """The production path on the selected rows: pareto_mask, then noise_marks (y a measurement, x exact)."""
    values = np.array([cols[x], cols[y]], dtype=float).T.reshape(-1, 2)
    ses = np.array([[0.0, _se(p, n)] for p, n in zip(cols[y], cols["n_total"], strict=True)]).reshape(-1, 2)
    mask = pareto_mask(values, [x_max, y_max])
    marks = noise_marks(values, ses, [x_max, y_max], mask, exact=[True, False])
    keys = [(cols["trial"][i], cols["checkpoint"][i], cols["attack"][i]) for i in np.flatnonzero(mask)]
    return dict(zip(keys, marks, strict=True))


def _store(factory: sessionmaker[Session], trial_dict: Callable[..., dict[str, Any]], seed: int,
           heavy: bool = False) -> str:
    """A sweep of 120 trials with best/last x pgd20/cw20 rows: tied params and accuracies, counts of 50, 400 or
    10,000 images, some rows without counts (n_total missing or 0), some trials without params. `heavy`: three
    parameter counts and three accuracies only, so most rows are exact duplicates of many others."""
    rng = random.Random(seed)
    name = f"front-{seed}-{heavy}"
    params = (lambda: rng.choice([5, 10, 20])) if heavy else (lambda: rng.randint(1, 40))
    trials = [trial_dict(i, config_hash=f"h{seed}-{heavy}-{i}", params=None if rng.random() < 0.05 else params(),
                         macs=rng.choice([1, 2, 40] if heavy else range(1, 41)) * 1000) for i in range(120)]
    with factory.begin() as s:
        sweep = create_sweep(s, name=name, spec={}, trials=trials, code_version="test")
        ids = [t.id for t in sweep.trials]
    with factory.begin() as s:
        for tid in ids:
            for checkpoint in ("best", "last"):
                for attack in ("pgd20", "cw20"):
                    n = rng.choice([50, 400, 10_000, 10_000, None, 0]) if rng.random() < 0.15 else \
                        rng.choice([50, 400, 10_000])  # fmt: skip
                    k = rng.choice([10, 12, 13]) if heavy else rng.randint(0, 25)  # a coarse grid: many ties
                    clean = min(1.0, k / 25 + 0.2)
                    upsert_final(s, trial_id=tid, row=FinalRow(checkpoint=checkpoint, attack=attack, robust_acc=k / 25,
                                                                clean_acc=clean, n_total=n))
    return name


@pytest.mark.parametrize(("seed", "heavy"), [(0, False), (1, False), (2, False), (3, True), (4, True)])
def test_front_and_noise_marks_equal_brute_force(factory, trial_dict, seed: int, heavy: bool) -> None:
    name = _store(factory, trial_dict, seed, heavy)
    cases = [("params", "robust_acc", False, True), ("macs", "robust_acc", False, True),
             ("params", "clean_acc", True, False), ("macs", "clean_acc", True, True)]
    filter_sets = [{"sweep": name, "checkpoint": "best", "attack": "pgd20"},
                   {"sweep": name, "checkpoint": ["best", "last"], "attack": "cw20"}, {"sweep": name}]
    with factory() as s:
        for x, y, x_max, y_max in cases:
            for filters in filter_sets:
                every = query_columns(s, fields=[*FIELDS, x, y], filters=filters)
                rows = list(zip(*[every[f] for f in [*FIELDS, x, y]], strict=True))
                want = brute(rows, x_max, y_max)
                got, n_rows = front_candidates(s, x=x, y=y, x_max=x_max, y_max=y_max, fields=[*FIELDS, x, y],
                                               filters=filters)
                assert n_rows == sum(r[4] is not None and r[5] is not None for r in rows)
                assert from_candidates(got, x, y, x_max, y_max) == want, (x, y, x_max, y_max, filters)
                assert set(want.values()) <= {True, False, None}


def test_a_front_point_beaten_only_by_a_later_level_is_still_noise(factory, trial_dict) -> None:
    """f1 (1 param, 0.50) dominates d (3 params, 0.495) by 0.005, within 2 SE at 10,000 images; f2 (2 params, 0.60)
    is the staircase level before d. The earlier pre-filter kept only rows within the band of the level before
    them, dropped d and called f1 clear of noise."""
    with factory.begin() as s:
        sweep = create_sweep(s, name="late", spec={}, code_version="test", trials=[
            trial_dict(i, config_hash=f"late-{i}", params=p) for i, p in enumerate([1, 2, 3])])
        for t, acc in zip(sweep.trials, [0.50, 0.60, 0.495], strict=True):
            upsert_final(s, trial_id=t.id, row=FinalRow(checkpoint="best", attack="pgd20", robust_acc=acc,
                                                        n_total=10_000))
        ids = [t.id for t in sweep.trials]
    with factory() as s:
        got, n = front_candidates(s, x="params", y="robust_acc", x_max=False, y_max=True,
                                  fields=[*FIELDS, "params", "robust_acc"], filters={"sweep": "late"})
    assert n == 3 and sorted(got["trial"]) == ids
    assert from_candidates(got, "params", "robust_acc", False, True) == {
        (ids[0], "best", "pgd20"): True, (ids[1], "best", "pgd20"): False}


def test_final_rows_carry_their_trials_sweep_params_and_macs(factory, trial_dict) -> None:
    """Every write path fills the copies the front's index reads: the writer's upsert (here) and the ORM."""
    from db.models import FinalResult, Trial

    with factory.begin() as s:
        sweep = create_sweep(s, name="copies", spec={}, code_version="test",
                             trials=[trial_dict(0, params=123, macs=456)])
        upsert_final(s, trial_id=sweep.trials[0].id, row=FinalRow(checkpoint="best", attack="pgd20"))
        trial = s.get(Trial, sweep.trials[0].id)
        trial.final_results.append(FinalResult(checkpoint="last", attack="pgd20"))
    with factory() as s:
        got = {(f.checkpoint, f.sweep_id, f.params, f.macs) for f in s.query(FinalResult)}
    assert got == {("best", sweep.id, 123, 456), ("last", sweep.id, 123, 456)}
    with factory.begin() as s, pytest.raises(LookupError, match="trial: no trial with id 999"):
        upsert_final(s, trial_id=999, row=FinalRow(checkpoint="best", attack="pgd20"))
