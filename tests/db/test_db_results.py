"""Results contract (SQLite and PostgreSQL): true upserts and reads in the result-field vocabulary."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db.contract import EPOCH_EXTRA_FIELDS, RESULT_FIELDS, EpochReport, FinalRow
from db.models import EpochMetric, FinalResult
from db.attempts import record_attempt
from db.results import Approx, NoMatch, query_results, trial_curves, upsert_epoch, upsert_final
from db.sweeps import mark_trial


def _epoch(epoch, metrics) -> EpochReport:
    return EpochReport(epoch=epoch, **metrics)


def _final(checkpoint, attack, metrics) -> FinalRow:
    return FinalRow(checkpoint=checkpoint, attack=attack, **metrics)


def _rows(factory, model) -> list:
    with factory() as s:
        return list(s.scalars(select(model).order_by(model.id)))


def test_upsert_epoch_replay_keeps_one_row_with_second_values(factory, make_sweep) -> None:
    _, tids = make_sweep()
    with factory.begin() as s:
        upsert_epoch(s, trial_id=tids[0], report=_epoch(3, {"clean_acc": 0.5, "robust_acc": 0.2, "lr": 0.1,
                                                            "lam_trajectory": [0.0, 0.1]}))
    with factory.begin() as s:
        upsert_epoch(s, trial_id=tids[0], report=_epoch(3, {"clean_acc": 0.6, "robust_acc": np.float32(0.25),
                                                            "lam_trajectory": [0.2, 0.3]}))
    rows = _rows(factory, EpochMetric)
    assert len(rows) == 1
    r = rows[0]
    assert (r.trial_id, r.epoch, r.clean_acc, r.robust_acc) == (tids[0], 3, 0.6, pytest.approx(0.25))
    assert r.lr == 0.1  # a field the replay did not set is kept
    assert r.lam_trajectory == [0.2, 0.3]


def test_upsert_epoch_distinct_keys_are_distinct_rows(factory, make_sweep) -> None:
    _, tids = make_sweep()
    with factory.begin() as s:
        for t in tids[:2]:
            for e in range(1, 4):
                upsert_epoch(s, trial_id=t, report=_epoch(e, {"clean_acc": e / 10}))
        upsert_epoch(s, trial_id=tids[2], report=_epoch(1, {}))  # no metrics: a bare row, replays do nothing
        upsert_epoch(s, trial_id=tids[2], report=_epoch(1, {}))
    assert len(_rows(factory, EpochMetric)) == 7


def test_upsert_final_replay(factory, make_sweep) -> None:
    _, tids = make_sweep()
    m1 = {"epoch": 10, "clean_acc": 0.8, "robust_acc": 0.4, "stability": 0.45, "n_total": 100, "n_correct": 80,
          "n_stable": 45, "n_robust": 40, "emp_lipschitz": 3.5, "emp_lipschitz_blocks": [1.0, 2.0, 3.5]}
    with factory.begin() as s:
        upsert_final(s, trial_id=tids[0], row=_final("best", "pgd20", m1))
        upsert_final(s, trial_id=tids[0], row=_final("last", "pgd20", {**m1, "epoch": 20}))
    with factory.begin() as s:
        upsert_final(s, trial_id=tids[0], row=_final("best", "pgd20", {"epoch": 12, "robust_acc": 0.42, "n_robust": 42}))
    rows = _rows(factory, FinalResult)
    assert len(rows) == 2
    best = next(r for r in rows if r.checkpoint == "best")
    assert (best.epoch, best.robust_acc, best.n_robust, best.clean_acc) == (12, 0.42, 42, 0.8)
    assert best.emp_lipschitz_blocks == [1.0, 2.0, 3.5]


def test_reports_reject_unknown_fields_bad_checkpoint_and_attack_names() -> None:
    """The contract refuses what the store could not hold: nothing reaches the database."""
    with pytest.raises(ValueError, match="robust_accuracy"):
        _epoch(1, {"clean_acc": 0.1, "robust_accuracy": 0.1})
    with pytest.raises(ValueError, match="lam_t"):
        _final("best", "pgd20", {"lam_t": 1.0})
    with pytest.raises(ValueError, match="checkpoint"):
        _final("middle", "pgd20", {})
    with pytest.raises(ValueError, match="not an attack key"):
        _final("best", "pgd", {})  # the config name, not the stored key
    with pytest.raises(ValueError, match="epoch"):
        _epoch(0, {})  # epochs are 1-based


def test_nan_metric_is_stored_as_null(factory, make_sweep) -> None:
    _, tids = make_sweep()
    with factory.begin() as s:
        upsert_epoch(s, trial_id=tids[0], report=_epoch(1, {"local_lipschitz": float("nan"), "clean_acc": 0.5}))
    (row,) = _rows(factory, EpochMetric)
    assert row.local_lipschitz is None and row.clean_acc == 0.5


def test_upsert_unknown_trial_violates_foreign_key(factory, make_sweep) -> None:
    make_sweep()
    with pytest.raises(IntegrityError), factory.begin() as s:
        upsert_epoch(s, trial_id=10**9, report=_epoch(1, {"clean_acc": 0.1}))


@pytest.fixture
def filled(factory, make_sweep):
    """Two sweeps; sweep a: 4 trials with final rows (best/last x pgd20, fgsm for trial 0) and 3 epochs each."""
    a, ta = make_sweep("a", n=4)
    b, tb = make_sweep("b", n=2)
    with factory.begin() as s:
        for k, t in enumerate(ta + tb):
            for ckpt in ("best", "last"):
                upsert_final(s, trial_id=t, row=_final(ckpt, "pgd20", {
                    "epoch": 5 if ckpt == "best" else 9, "clean_acc": 0.8 - k / 100, "robust_acc": 0.4 + k / 100,
                    "emp_lipschitz": 2.0, "emp_lipschitz_blocks": [1.5, 2.0], "n_total": 100, "n_correct": 80 - k,
                    "n_stable": 50, "n_robust": 40 + k, "device_seconds": None if k == 1 else 100.0 + k}))
            for e in range(1, 4):
                upsert_epoch(s, trial_id=t, report=_epoch(e, {
                    "clean_acc": e / 10, "adv_loss_train": 2.0 - e / 10, "adv_loss_val": 2.5 - e / 10,
                    "natural_risk": 1.0, "lam_t": 1.0, "lr": 0.1, "device_seconds": 3.0, "lam_trajectory": [e]}))
        upsert_final(s, trial_id=ta[0], row=_final("best", "fgsm", {"epoch": 5, "robust_acc": 0.5}))
        mark_trial(s, trial_id=ta[1], status="running", actor="writer")
        mark_trial(s, trial_id=ta[1], status="completed", actor="writer", device_seconds=77.0)
        record_attempt(s, trial_id=ta[1], device="cpu", node="host 10.0.0.1")
    return {"a": a, "b": b, "ta": ta, "tb": tb}


def test_query_results_field_names_and_values(factory, filled) -> None:
    with factory() as s:
        rows = query_results(s, filters={}, kind="final")
        epochs = query_results(s, filters={}, kind="epoch")
    assert len(rows) == 6 * 2 + 1 and len(epochs) == 6 * 3
    assert all(list(r) == list(RESULT_FIELDS) for r in rows + epochs)
    assert "flops" not in RESULT_FIELDS and {"macs", "device_seconds", "n_correct", "clean_loss_val"} <= set(RESULT_FIELDS)
    r = rows[0]  # sweep a, trial idx 0, best, fgsm (ordered by sweep, idx, checkpoint, attack)
    assert (r["sweep"], r["trial"], r["checkpoint"], r["attack"], r["epoch"]) == ("a", filled["ta"][0], "best",
                                                                                   "fgsm", 5)  # fmt: skip
    assert (r["arch"], r["depths"], r["widths"], r["params"], r["macs"], r["method"], r["lam"]) == (
        "wrn-d5-5-5-w10-10-10", "5-5-5", "10-10-10", 46_160_474, 6_658_906_368, "sat", 1.0)
    assert r["eps"] == pytest.approx(8 / 255) and r["dataset"] == "cifar10-jpeg" and r["n_train"] is None
    assert r["status"] == "queued" and r["error"] is None
    assert all(r[f] is None for f in ("clean_loss_train", "adv_loss_train", "natural_risk", "robust_reg", "lam_t",
                                      "clean_loss_val", "adv_loss_val"))
    r0 = rows[1]  # trial 0, best, pgd20: the counts and the per-block Lipschitz reach the reader
    assert (r0["n_total"], r0["n_correct"], r0["n_stable"], r0["n_robust"]) == (100, 80, 50, 40)
    assert r0["emp_lipschitz_blocks"] == [1.5, 2.0] and r0["device_seconds"] == 100.0
    r1 = next(x for x in rows if x["trial"] == filled["ta"][1])
    assert r1["device_seconds"] is None and r1["status"] == "completed"  # the evaluation's own time, never the trial's
    e = epochs[0]
    assert (e["epoch"], e["adv_loss_train"], e["adv_loss_val"], e["natural_risk"], e["device_seconds"]) == (
        1, 1.9, 2.4, 1.0, 3.0)
    assert all(e[f] is None for f in ("emp_lipschitz", "checkpoint", "attack", "n_total", "clean_loss_test",
                                      "adv_loss_test"))  # the test-set fields belong to final rows only


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
    assert len(q(eps=Approx(0.0314, 0.00005))) == 13 and q(eps=Approx(0.0314, 0.00001)) == []
    assert {r["trial"] for r in q(n_train=None, sweep="a")} == {ta[0], ta[2]}
    assert {r["trial"] for r in q(n_train="10000", sweep="a")} == {ta[1], ta[3]}
    assert {r["trial"] for r in q(trial=ta[3])} == {ta[3]}
    assert len(q(status="completed")) == 2
    assert q(arch="wrn-d3-3-3-w4-4-4", sweep="a", checkpoint="best", attack="pgd20")[0]["params"] == 2_000_001
    assert len(q("epoch", epoch=[1, 3], sweep="a")) == 8
    assert q("epoch", attack="pgd20") == [] and len(q("epoch", attack=None)) == 18  # fields the kind lacks
    assert q(sweep="nope") == [] and q(sweep=[]) == []
    with pytest.raises(ValueError, match="robust_accuracy"):
        q(robust_accuracy=0.5)
    with pytest.raises(ValueError, match="kind"):
        q("per_batch")
    with pytest.raises(ValueError, match="seed"):
        q(seed="zero")
    with pytest.raises(ValueError, match="not an attack key"):
        q(attack="pgd")
    with pytest.raises(ValueError, match="emp_lipschitz_blocks"):
        q(emp_lipschitz_blocks=[1.0])


def test_empty_match_on_eps_names_the_values_present(factory, filled) -> None:
    with factory() as s, pytest.raises(NoMatch) as err:
        query_results(s, filters={"sweep": "a", "eps": 0.05}, kind="final", explain_empty=True)
    assert err.value.field == "eps" and "8/255 (0.03137)" in err.value.reason
    with factory() as s, pytest.raises(NoMatch, match="attack values present: fgsm, pgd20"):
        query_results(s, filters={"attack": "cw20"}, explain_empty=True)
    with factory() as s:  # nothing matches the other filters either: an honest empty answer
        assert query_results(s, filters={"sweep": "nope", "eps": 0.05}, explain_empty=True) == []
        assert query_results(s, filters={"eps": 0.05}) == []  # explaining is opt-in


def test_trial_curves(factory, filled) -> None:
    t = filled["ta"][2]
    with factory.begin() as s:  # written out of order: read back ordered by epoch
        upsert_epoch(s, trial_id=t, report=_epoch(7, {"clean_acc": 0.7}))
        upsert_epoch(s, trial_id=t, report=_epoch(5, {"clean_acc": 0.5}))
    with factory() as s:
        curves = trial_curves(s, trial_id=t)
        assert trial_curves(s, trial_id=10**9) == []
    assert [c["epoch"] for c in curves] == [1, 2, 3, 5, 7]
    assert list(curves[0]) == [*RESULT_FIELDS, *EPOCH_EXTRA_FIELDS]
    assert (curves[1]["lr"], curves[1]["device_seconds"], curves[1]["lam_trajectory"]) == (0.1, 3.0, [2])
    assert curves[-1]["lam_trajectory"] is None and curves[-1]["clean_acc"] == 0.7
