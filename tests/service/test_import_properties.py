"""Property tests of the CSV importer (service.references.import_csv over service.csv_cells and db.imports): random
tables with hostile text (formula starts, quotes, commas, CR/LF, NUL, any Unicode), integers of any size, floats,
ragged rows and bytes that are not UTF-8 are either imported exactly (every cell as stored, and again after a trip
through the CSV export) or rejected with ImportRejected naming a row of the file and one of its fields, with
nothing stored; never another exception, never part of a file."""

from __future__ import annotations

import csv
import io
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, session_factory, upgrade
from db.imports import ImportRejected
from db.models import FinalResult, Sweep, Trial
from db.results import query_results
from service.exports import render_csv
from service.references import import_csv

HEADER = ["arch", "method", "eps", "norm", "dataset", "seed", "checkpoint", "attack", "robust_acc", "params",
          "n_total", "note"]
TEXT_FIELDS = ("arch", "method", "norm", "dataset")
INT_FIELDS = ("params", "n_total")

hostile = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1", "'=1", "a,b", 'say "hi"',
     "line\nbreak", "nul\x00", "-0.5", " padded ", "é中𝄞"])
huge = st.integers(-10, 2**70).map(str) | st.sampled_from(["1e30", "9007199254740993", "60.0", "1e3", "inf", "nan",
                                                            "-1", "0x10", "1_000", "²"])
odd = st.floats(allow_nan=True, allow_infinity=True).map(repr) | st.sampled_from(["1e309", "-0.0", "1/2"])
texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12) | hostile
# (usual, hostile): a cell is hostile one time in four
CELLS: dict[str, tuple[st.SearchStrategy[str], st.SearchStrategy[str]]] = {
    "arch": (st.just("wrn-d1-1-1-w1-1-1"), texts), "method": (st.just("trades"), texts),
    "eps": (st.floats(0, 1).map(repr), odd), "norm": (st.just("linf"), texts),
    "dataset": (st.just("cifar10"), texts), "checkpoint": (st.just("best"), st.just("best")),
    "attack": (st.just("pgd20"), st.just("pgd20")), "robust_acc": (st.floats(0, 1).map(repr), odd),
    "params": (st.integers(1, 2**63 - 1).map(str), huge), "n_total": (st.integers(1, 2**31 - 1).map(str), huge),
    "note": (st.text(max_size=8).filter(lambda t: "\x00" not in t and not any(0xD800 <= ord(c) < 0xE000 for c in t)),
             hostile),
}


@st.composite
def files(draw: Any) -> tuple[bytes, list[list[str]]]:
    """(the file's bytes, its data rows as written); some rows ragged, some cells with a byte that is not UTF-8."""
    rows = []
    for seed in range(draw(st.integers(1, 4))):
        row = [str(seed) if f == "seed" else draw(CELLS[f][draw(st.integers(0, 3)) == 0]) for f in HEADER]
        cut = draw(st.sampled_from([0] * 8 + [-1, 1]))  # mostly whole rows; some a cell short or one too many
        rows.append(row[:cut] if cut < 0 else row + ["extra"] * cut)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    data = buf.getvalue().encode("utf-8")
    if draw(st.integers(0, 9)) == 0:  # a byte no UTF-8 text holds (0xff) somewhere after the header
        at = draw(st.integers(len(",".join(HEADER)) + 2, len(data)))
        data = data[:at] + b"\xff" + data[at:]  # 0xe9 could join a following 0x80 0x80 into a character
    return data, rows


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('props') / 'rg.db'}")
    upgrade(engine)
    return session_factory(engine)


def _counts(s: Session) -> tuple[int, ...]:
    return tuple(int(s.scalar(select(func.count()).select_from(t)) or 0) for t in (Sweep, Trial, FinalResult))


def _as_stored(field: str, text: str) -> Any:
    return int(float(text)) if field in INT_FIELDS and not text.strip().lstrip("+-").isdigit() else (
        int(text) if field in INT_FIELDS else text.strip())


_names = itertools.count()


def _check_imported(s: Session, name: str, rows: list[list[str]]) -> None:
    got = sorted(query_results(s, filters={"sweep": name}), key=lambda r: r["seed"])
    assert len(got) == len(rows)
    for r, row in zip(got, rows, strict=True):
        cells = dict(zip(HEADER, row, strict=True))
        for f in (*TEXT_FIELDS, *INT_FIELDS):
            assert r[f] == _as_stored(f, cells[f]), (f, cells[f], r[f])
        assert r["robust_acc"] == float(cells["robust_acc"]) and r["eps"] == float(cells["eps"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(files())
def test_a_csv_file_imports_exactly_or_is_rejected_naming_row_and_field(sessions: sessionmaker[Session],
                                                                        file: tuple[bytes, list[list[str]]]) -> None:
    data, rows = file
    name = f"p{next(_names)}"
    with sessions() as s:
        before = _counts(s)
    try:
        with sessions.begin() as s:
            import_csv(s, name=name, data=data, source="property test")
    except ImportRejected as e:
        event(f"rejected: {e.field if e.field in HEADER else e.field.split()[0]}")
        assert 0 <= e.row <= len(rows) and e.reason
        assert e.field in HEADER or e.field.startswith("column "), e
        with sessions() as s:
            assert _counts(s) == before  # all or nothing
        return
    event("imported")
    assert b"\xff" not in data and all(len(r) == len(HEADER) for r in rows)
    with sessions() as s:
        _check_imported(s, name, rows)
        exported = render_csv(query_results(s, filters={"sweep": name}))
    with sessions.begin() as s:  # the export imports back to the same cells
        import_csv(s, name=name + "-back", data=exported.encode(), source="its own export")
    with sessions() as s:
        _check_imported(s, name + "-back", rows)


def test_a_file_that_is_not_csv_is_rejected_naming_its_row(sessions: sessionmaker[Session]) -> None:
    data = ",".join(HEADER).encode() + b"\r\n" + b'"' + b"x" * 200_000 + b'"\r\n'  # one cell beyond csv's limit
    with pytest.raises(ImportRejected) as e, sessions.begin() as s:
        import_csv(s, name="not-csv", data=data, source=None)
    assert (e.value.row, e.value.field) == (1, "row") and "field larger than field limit" in e.value.reason
