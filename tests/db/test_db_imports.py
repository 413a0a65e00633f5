"""db.imports: external rows become one imported, completed reference sweep; one bad row rejects everything, naming
the row and the field; extra columns are kept as provenance."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.engine import make_engine, session_factory, upgrade
from db.imports import ImportRejected, import_rows, validate_rows
from db.models import EpochMetric, FinalResult, Sweep, Trial
from db.results import query_results
from db.sweeps import SweepExists


def _count(arch: str, dataset: str) -> tuple[int, int] | None:
    return (1000, 77_000) if arch.startswith("wrn-") else None


def _row(**over: Any) -> dict[str, Any]:
    row = {"arch": "wrn-d1-1-1-w1-1-1", "method": "trades", "lam": "6", "eps": "0.03137254901960784",
           "norm": "linf", "dataset": "cifar10", "checkpoint": "best", "attack": "pgd20", "clean_acc": "0.8",
           "robust_acc": "0.5", "n_total": "", "note": "Table 1", "robust_acc_std": "0.004", "source": "paper"}
    return row | over


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[Any]:
    engine = make_engine(f"sqlite:///{tmp_path / 'rg.db'}")
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def _n(s: Session, table: type) -> int:
    return int(s.scalar(select(func.count()).select_from(table)) or 0)


def test_rows_become_one_trial_per_configuration(sessions: Any) -> None:
    rows = [_row(), _row(attack="autoattack", robust_acc="0.45"), _row(checkpoint="last", robust_acc="0.48"),
            _row(lam="", method="mart", params="2000", macs="9"), _row(seed="1"),
            _row(attack="", checkpoint="", epoch="3", adv_loss_train="1.25", clean_acc="0.7", robust_acc="")]
    with sessions.begin() as s:
        result = import_rows(s, name="ref", rows=rows, source="a paper", count=_count)
    assert (result.n_trials, result.n_final, result.n_epoch, result.skipped) == (3, 5, 1, [])
    with sessions() as s:
        sweep = s.scalars(select(Sweep)).one()
        assert (sweep.imported, sweep.status, sweep.source, sweep.n_trials) == (True, "completed", "a paper", 3)
        trials = s.scalars(select(Trial).order_by(Trial.idx)).all()
        assert [(t.method, t.lam, t.seed, t.params, t.macs, t.status) for t in trials] == [
            ("trades", 6.0, 0, 1000, 77_000, "completed"), ("mart", None, 0, 2000, 9, "completed"),
            ("trades", 6.0, 1, 1000, 77_000, "completed")]
        assert (trials[0].depths, trials[0].widths) == ("1-1-1", "1-1-1")
        prov = trials[0].config["imported"]
        assert prov["source"] == "a paper" and len(prov["rows"]) == 4
        assert prov["rows"][0] == {"row": 1, "checkpoint": "best", "attack": "pgd20", "note": "Table 1",
                                   "robust_acc_std": "0.004", "source": "paper", "seed_not_stated": True}
        assert trials[1].config["imported"]["rows"][0]["lam_not_stated"] is True
        finals = query_results(s, filters={"sweep": "ref", "attack": "autoattack"})
        assert [(r["robust_acc"], r["clean_acc"], r["n_total"]) for r in finals] == [(0.45, 0.8, None)]
        epoch = query_results(s, filters={"sweep": "ref"}, kind="epoch")
        assert [(r["epoch"], r["adv_loss_train"], r["clean_acc"]) for r in epoch] == [(3, 1.25, 0.7)]


@pytest.mark.parametrize(("bad", "field", "words"), [
    ({"eps": "8"}, "eps", "outside [0, 1]"),
    ({"robust_acc": "54.99"}, "robust_acc", "a fraction"),
    ({"attack": "pgd"}, "attack", "not an attack key"),
    ({"attack": "pgd"}, "attack", "not an attack key"),
    ({"checkpoint": "final"}, "checkpoint", "best or last"),
    ({"n_train": "many"}, "n_train", "not an integer"),
    ({"arch": "vgg11"}, "params", "cannot be counted"),
    ({"dataset": ""}, "dataset", "required"),
    ({"attack": ""}, "attack", "an attack"),
    ({"adv_loss_train": "1.0"}, "adv_loss_train", "not a field of a final row"),
    ({"n_total": "10", "n_robust": "11"}, "n_robust", "outside 0..n_total"),
    ({"status": "done"}, "status", "not one of"),
])
def test_one_bad_row_rejects_the_file_naming_row_and_field(sessions: Any, bad: dict, field: str,
                                                          words: str) -> None:
    rows = [_row(), _row(seed="1"), _row(seed="2", **bad)]
    with pytest.raises(ImportRejected) as e, sessions.begin() as s:
        import_rows(s, name="ref", rows=rows, count=_count)
    assert (e.value.row, e.value.field) == (3, field) and words in e.value.reason, str(e.value)
    assert str(e.value).startswith(f"row 3: {field}: ")
    with sessions() as s:
        assert (_n(s, Sweep), _n(s, Trial), _n(s, FinalResult), _n(s, EpochMetric)) == (0, 0, 0, 0)


def test_duplicates_and_disagreeing_trials_are_rejected_or_skipped() -> None:
    with pytest.raises(ImportRejected, match=r"row 2: attack: the same configuration, checkpoint and attack as row 1"):
        validate_rows([_row(), _row(robust_acc="0.51")], count=_count)
    with pytest.raises(ImportRejected, match=r"row 2: params: 5 differs from 1000 in row 1"):
        validate_rows([_row(), _row(attack="fgsm", params="5")], count=_count)
    parsed, skipped = validate_rows([_row(), _row(robust_acc="0.51"), _row(eps="2")], count=_count,
                                    skip_invalid=True)
    assert len(parsed) == 1 and [(e.row, e.field) for e in skipped] == [(2, "attack"), (3, "eps")]


def test_a_taken_name_is_refused(sessions: Any) -> None:
    with sessions.begin() as s:
        import_rows(s, name="ref", rows=[_row()], count=_count)
    with pytest.raises(SweepExists), sessions.begin() as s:
        import_rows(s, name="ref", rows=[_row()], count=_count)


def test_what_a_reference_does_not_state_stays_null(sessions: Any) -> None:
    """A paper's DenseNet row with parameters but no MACs, and no lambda: stored as NULL, never made up."""
    row = _row(arch="densenet-bc-40-k12", params="1000000")
    row.pop("lam", None)
    with sessions.begin() as s:
        import_rows(s, name="ref", rows=[row], count=_count)
    with sessions() as s:
        (t,) = s.query(Trial).all()
        assert (t.params, t.macs, t.lam) == (1_000_000, None, None)
        assert t.config["imported"]["rows"][0]["lam_not_stated"] is True


# ------------------------------------------------------------------ any JSON value, on SQLite and PostgreSQL

_ANY_TEXT = st.text(max_size=8) | st.sampled_from(["a\x00b", "\ud800", "x" * 201, "=1+1"])
_ANY_VALUE = (st.integers(-(2**70), 2**70) | st.floats() | st.booleans() | st.none() | _ANY_TEXT
              | st.lists(st.floats(), max_size=2))
_FIELDS = ("params", "n_total", "n_train", "seed", "epoch", "robust_acc", "arch", "method", "note")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(_FIELDS), _ANY_VALUE, max_size=3))
def test_any_json_row_is_stored_exactly_or_rejected_naming_its_field(factory: Any, over: dict[str, Any]) -> None:
    """An API row's values as JSON gives them (ints of any size, inf, NaN, true, lone surrogates, NUL, long text):
    stored exactly or rejected naming the field, on both backends; never a database error, never a partial sweep."""
    name = f"any-{uuid.uuid4().hex[:8]}"
    try:
        with factory.begin() as s:
            import_rows(s, name=name, rows=[_row(), _row(**{"checkpoint": "last", **over})], count=_count)
    except ImportRejected as e:
        assert e.row in (1, 2) and e.field in (*_FIELDS, "n_correct", "n_robust", "row"), e
        with factory() as s:
            assert s.scalar(select(Sweep.id).where(Sweep.name == name)) is None
        return
    with factory() as s:
        (row,) = query_results(s, filters={"sweep": name, "checkpoint": "last"})
    for f, v in over.items():
        if f in ("params", "n_total", "n_train", "seed", "epoch") and v is not None and not (
                isinstance(v, str) and not v.strip()) and not (isinstance(v, float) and math.isnan(v)):
            assert row[f] == int(v) and isinstance(row[f], int), (f, v, row[f])
        elif f in ("arch", "method") and isinstance(v, str) and v.strip():
            assert row[f] == v.strip()
