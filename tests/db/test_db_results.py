"""Results contract (SQLite and PostgreSQL): true upserts and reads in the result-field vocabulary."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db.fields import EPOCH_EXTRA_FIELDS, RESULT_FIELDS
from db.models import EpochMetric, FinalResult
from db.results import query_results, trial_curves, upsert_epoch, upsert_final
from db.sweeps import mark_trial


def _rows(factory, model) -> list:
    with factory() as s:
        return list(s.scalars(select(model).order_by(model.id)))


def test_upsert_epoch_replay_keeps_one_row_with_second_values(factory, make_sweep) -> None:
    _, tids = make_sweep()
    with factory.begin() as s:
        upsert_epoch(s, trial_id=tids[0], epoch=3, metrics={"clean_acc": 0.5, "robust_acc": 0.2, "lr": 0.1,
                                                             "lam_trajectory": [0.0, 0.1]})  # fmt: skip
    with factory.begin() as s:
        upsert_epoch(s, trial_id=tids[0], epoch=3, metrics={"clean_acc": 0.6, "robust_acc": np.float32(0.25),
                                                             "lam_trajectory": np.array([0.2, 0.3])})  # fmt: skip
    rows = _rows(factory, EpochMetric)
    assert len(rows) == 1
    r = rows[0]
    assert (r.trial_id, r.epoch, r.clean_acc, r.robust_acc) == (tids[0], 3, 0.6, pytest.approx(0.25))
    assert r.lr == 0.1  # a key the replay did not send is kept
    assert r.lam_trajectory == [0.2, 0.3]


def test_upsert_epoch_distinct_keys_are_distinct_rows(factory, make_sweep) -> None:
    _, tids = make_sweep()
    with factory.begin() as s:
        for t in tids[:2]:
            for e in range(3):
                upsert_epoch(s, trial_id=t, epoch=e, metrics={"clean_acc": e / 10})
        upsert_epoch(s, trial_id=tids[2], epoch=0, metrics={})  # no metrics: a bare row, replays do nothing
        upsert_epoch(s, trial_id=tids[2], epoch=0, metrics={})
    assert len(_rows(factory, EpochMetric)) == 7


def test_upsert_final_replay(factory, make_sweep) -> None:
    _, tids = make_sweep()
    m1 = {"epoch": 10, "clean_acc": 0.8, "robust_acc": 0.4, "stability": 0.45, "n_total": 100, "n_correct": 80,
          "n_stable": 45, "n_robust": 40, "emp_lipschitz": 3.5, "emp_lipschitz_blocks": [1.0, 2.0, 3.5]}  # fmt: skip
    with factory.begin() as s:
        upsert_final(s, trial_id=tids[0], checkpoint="best", attack="pgd20", metrics=m1)
        upsert_final(s, trial_id=tids[0], checkpoint="last", attack="pgd20", metrics={**m1, "epoch": 20})
    with factory.begin() as s:
        upsert_final(s, trial_id=tids[0], checkpoint="best", attack="pgd20",
                     metrics={"epoch": 12, "robust_acc": 0.42, "n_robust": np.int64(42)})  # fmt: skip
    rows = _rows(factory, FinalResult)
    assert len(rows) == 2
    best = next(r for r in rows if r.checkpoint == "best")
    assert (best.epoch, best.robust_acc, best.n_robust, best.clean_acc) == (12, 0.42, 42, 0.8)
    assert best.emp_lipschitz_blocks == [1.0, 2.0, 3.5]


def test_upsert_rejects_unknown_keys_and_bad_checkpoint(factory, make_sweep) -> None:
    _, tids = make_sweep()
    with pytest.raises(ValueError, match="robust_accuracy"), factory.begin() as s:
        upsert_epoch(s, trial_id=tids[0], epoch=0, metrics={"clean_acc": 0.1, "robust_accuracy": 0.1})
    with pytest.raises(ValueError, match="lam_t"), factory.begin() as s:
        upsert_final(s, trial_id=tids[0], checkpoint="best", attack="pgd20", metrics={"lam_t": 1.0})
    with pytest.raises(ValueError, match="checkpoint"), factory.begin() as s:
        upsert_final(s, trial_id=tids[0], checkpoint="middle", attack="pgd20", metrics={})
    assert _rows(factory, EpochMetric) == [] and _rows(factory, FinalResult) == []


def test_upsert_unknown_trial_violates_foreign_key(factory, make_sweep) -> None:
    make_sweep()
    with pytest.raises(IntegrityError), factory.begin() as s:
        upsert_epoch(s, trial_id=10**9, epoch=0, metrics={"clean_acc": 0.1})


@pytest.fixture
def filled(factory, make_sweep):
    """Two sweeps; sweep a: 4 trials with final rows (best/last x pgd20, fgsm for trial 0) and 3 epochs each."""
    a, ta = make_sweep("a", n=4)
    b, tb = make_sweep("b", n=2)
    with factory.begin() as s:
        for k, t in enumerate(ta + tb):
            for ckpt in ("best", "last"):
                upsert_final(s, trial_id=t, checkpoint=ckpt, attack="pgd20",
                             metrics={"epoch": 5 if ckpt == "best" else 9, "clean_acc": 0.8 - k / 100,
                                      "robust_acc": 0.4 + k / 100, "emp_lipschitz": 2.0,
                                      "gpu_seconds": None if k == 1 else 100.0 + k})  # fmt: skip
            for e in range(3):
                upsert_epoch(s, trial_id=t, epoch=e, metrics={"clean_acc": e / 10, "adv_loss_train": 2.0 - e / 10,
                                                              "natural_risk": 1.0, "lam_t": 1.0, "lr": 0.1,
                                                              "seconds": 3.0, "lam_trajectory": [e]})  # fmt: skip
        upsert_final(s, trial_id=ta[0], checkpoint="best", attack="fgsm", metrics={"epoch": 5, "robust_acc": 0.5})
        mark_trial(s, trial_id=ta[1], status="completed", gpu_seconds=77.0)
    return {"a": a, "b": b, "ta": ta, "tb": tb}


def test_query_results_field_names_and_values(factory, filled) -> None:
    with factory() as s:
        rows = query_results(s, filters={}, kind="final")
        epochs = query_results(s, filters={}, kind="epoch")
    assert len(rows) == 6 * 2 + 1 and len(epochs) == 6 * 3
    assert all(list(r) == list(RESULT_FIELDS) for r in rows + epochs)
    r = rows[0]  # sweep a, trial idx 0, best, fgsm (ordered by sweep, idx, checkpoint, attack)
    assert (r["sweep"], r["trial"], r["checkpoint"], r["attack"], r["epoch"]) == ("a", filled["ta"][0], "best",
                                                                                   "fgsm", 5)  # fmt: skip
    assert (r["arch"], r["depths"], r["widths"], r["params"], r["method"], r["lam"]) == (
        "wrn-d5-5-5-w10-10-10", "5-5-5", "10-10-10", 46_160_474, "sat", 1.0)
    assert r["eps"] == pytest.approx(8 / 255) and r["dataset"] == "cifar10-jpeg" and r["n_train"] is None
    assert r["status"] == "queued" and r["error"] is None
    assert all(r[f] is None for f in ("clean_loss_train", "adv_loss_train", "natural_risk", "robust_reg", "lam_t"))
    r1 = next(x for x in rows if x["trial"] == filled["ta"][1])
    assert r1["gpu_seconds"] == 77.0 and r1["status"] == "completed"  # falls back to the trial's GPU-seconds
    e = epochs[0]
    assert (e["epoch"], e["adv_loss_train"], e["natural_risk"], e["checkpoint"], e["attack"]) == (
        0, 2.0, 1.0, None, None)
    assert e["emp_lipschitz"] is None


def test_query_results_filters(factory, filled) -> None:
    ta, tb = filled["ta"], filled["tb"]

    def q(kind="final", **filters):
        with factory() as s:
            return query_results(s, filters=filters, kind=kind)

    assert {r["trial"] for r in q(sweep="b")} == set(tb)
    assert {r["trial"] for r in q(sweep=filled["b"])} == set(tb)  # numeric id
    assert {r["trial"] for r in q(sweep=str(filled["a"]))} == set(ta)  # id as a string (query parameter)
    assert {r["trial"] for r in q(sweep=["a", "b"])} == set(ta + tb)
    assert {r["trial"] for r in q(sweep_ids=[filled["b"]])} == set(tb)
    assert len(q(attack="fgsm")) == 1 and len(q(attack=["fgsm", "pgd20"])) == 13
    assert {r["checkpoint"] for r in q(checkpoint="last")} == {"last"}
    assert {r["trial"] for r in q(method="trades", sweep="a")} == set(ta[2:])
    assert len(q(eps=8 / 255)) == 13 and len(q(eps=str(8 / 255))) == 13 and q(eps=0.0) == []
    assert {r["trial"] for r in q(n_train=None, sweep="a")} == {ta[0], ta[2]}
    assert {r["trial"] for r in q(n_train="10000", sweep="a")} == {ta[1], ta[3]}
    assert {r["trial"] for r in q(trial=ta[3])} == {ta[3]}
    assert len(q(status="completed")) == 2
    assert q(arch="wrn-d3-3-3-w4-4-4", sweep="a", checkpoint="best", attack="pgd20")[0]["params"] == 2_000_001
    assert len(q("epoch", epoch=[0, 2], sweep="a")) == 8
    assert q("epoch", attack="pgd20") == [] and len(q("epoch", attack=None)) == 18  # fields the kind lacks
    assert q(sweep="nope") == [] and q(sweep=[]) == []
    with pytest.raises(ValueError, match="robust_accuracy"):
        q(robust_accuracy=0.5)
    with pytest.raises(ValueError, match="kind"):
        q("per_batch")
    with pytest.raises(ValueError, match="seed"):
        q(seed="zero")


def test_trial_curves(factory, filled) -> None:
    t = filled["ta"][2]
    with factory.begin() as s:  # written out of order: read back ordered by epoch
        upsert_epoch(s, trial_id=t, epoch=7, metrics={"clean_acc": 0.7})
        upsert_epoch(s, trial_id=t, epoch=5, metrics={"clean_acc": 0.5})
    with factory() as s:
        curves = trial_curves(s, trial_id=t)
        assert trial_curves(s, trial_id=10**9) == []
    assert [c["epoch"] for c in curves] == [0, 1, 2, 5, 7]
    assert list(curves[0]) == [*RESULT_FIELDS, *EPOCH_EXTRA_FIELDS]
    assert (curves[1]["lr"], curves[1]["seconds"], curves[1]["lam_trajectory"]) == (0.1, 3.0, [1])
    assert curves[-1]["lam_trajectory"] is None and curves[-1]["clean_acc"] == 0.7

