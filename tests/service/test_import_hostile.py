"""The importer under hostile files and bodies: a ragged row, a byte that is not UTF-8, an integer beyond the
store (1e30, 2^63), a text it cannot hold (a lone surrogate, a NUL, 201 characters of arch) each reject the whole
import naming the row and the field (the CLI: one line, exit status 2, no traceback; the API: 422 with `loc`), and
nothing is stored; integers are kept exactly (9007199254740993 is not rounded through a float)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from testkit.cli import run_cli

from db.engine import make_engine, session_factory, upgrade
from db.models import FinalResult, Sweep
from db.results import query_results
from service.settings import Settings

HEADER = "arch,method,eps,norm,dataset,seed,checkpoint,attack,robust_acc,params,n_total"
GOOD = "wrn-d1-1-1-w1-1-1,sat,0.03,linf,cifar10,0,best,pgd20,0.5,1000,500"
BIG = 9007199254740993  # 2^53 + 1: a float rounds it to ...992


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    upgrade(make_engine(url))
    return url


def _stored(db: str) -> tuple[int, int]:
    with session_factory(make_engine(db))() as s:
        return (int(s.scalar(select(func.count()).select_from(Sweep)) or 0),
                int(s.scalar(select(func.count()).select_from(FinalResult)) or 0))


def _import(db: str, tmp_path: Path, body: bytes) -> Any:
    path = tmp_path / "in.csv"
    path.write_bytes(body)
    return run_cli("results", "import", str(path), "--sweep", "ref", "--database-url", db)


@pytest.mark.parametrize(("second", "message"), [
    (GOOD.replace(",500", ",1e30"), ("row 2 (line 3): n_total: '1e30' is too large for the store (at most "
                                    "2,147,483,647 in magnitude)")),
    (GOOD.replace(",1000,", ",9223372036854775808,"), ("row 2 (line 3): params: '9223372036854775808' is too large "
                                                       "for the store (at most 9,223,372,036,854,775,807")),
    (GOOD.replace(",1000,", ",1e19,"), ("row 2 (line 3): params: '1e19' is too large for the store (at most "
                                       "9,223,372,036,854,775,807 in magnitude)")),
    (GOOD.replace(",0,best", ",inf,best"), "row 2 (line 3): seed: 'inf' is not an integer"),
    (GOOD.replace(",0.5,", ",nan,"), "row 2 (line 3): robust_acc: 'nan' is not a number"),
    (GOOD + ",extra", "row 2 (line 3): column 12: the row has 12 cells and the header 11 (a ragged row"),
    (GOOD.rsplit(",", 1)[0], "row 2 (line 3): n_total: the row has 10 cells and the header 11 (a ragged row"),
    (GOOD.replace("sat", "s\xffat"), "row 2 (line 3): method: byte 0xff is not UTF-8"),
    (GOOD.replace("wrn-d1-1-1-w1-1-1", "a" * 201), ("row 2 (line 3): arch: 201 characters are too many for the "
                                                   "store (at most 200)")),
])
def test_cli_rejects_the_file_in_one_line_naming_row_and_field(db: str, tmp_path: Path, second: str,
                                                               message: str) -> None:
    body = f"{HEADER}\n{GOOD.replace(',0,', ',1,')}\n{second}\n".encode("latin-1")
    out = _import(db, tmp_path, body)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith(f"error: in.csv: {message}"), out.stderr
    assert out.stderr.strip().endswith("; nothing was imported")
    assert _stored(db) == (0, 0)


def test_cli_names_a_bad_byte_in_the_header(db: str, tmp_path: Path) -> None:
    out = _import(db, tmp_path, f"{HEADER},no\xfbte\n{GOOD},x\n".encode("latin-1"))
    assert out.returncode == 2 and out.stderr.startswith(
        "error: in.csv: the header (line 1): column 12: the header has byte 0xfb, which is not UTF-8"), out.stderr
    assert _stored(db) == (0, 0)


def test_integers_are_kept_exactly_from_a_file_and_a_bom(db: str, tmp_path: Path) -> None:
    body = f"\ufeff{HEADER}\n{GOOD.replace(',1000,', f',{BIG},').replace(',500', ',60.0')}\n".encode()
    out = _import(db, tmp_path, body)
    assert out.returncode == 0, out.stderr
    with session_factory(make_engine(db))() as s:
        (row,) = query_results(s, filters={"sweep": "ref"})
    assert (row["params"], row["n_total"], row["arch"]) == (BIG, 60, "wrn-d1-1-1-w1-1-1")


@pytest.fixture
def client(db: str, tmp_path: Path) -> Iterator[TestClient]:
    from testkit.api_client import api_client

    with api_client(Settings(database_url=db, storage_path=str(tmp_path), published_dir=None)) as c:
        yield c


def _row(**over: Any) -> dict[str, Any]:
    return dict(zip(HEADER.split(","), GOOD.split(","), strict=True)) | over


def test_api_keeps_integers_exactly(client: TestClient) -> None:
    r = client.post("/api/v1/sweeps/import", json={"name": "ref", "rows": [_row(params=BIG), _row(seed=1,
                                                                                               params=str(BIG))]})
    assert r.status_code == 201, r.text
    rows = client.get("/api/v1/results", params={"sweep": "ref"}).json()
    assert [r["params"] for r in rows] == [BIG, BIG]


def _body(*rows: str, name: str = "ref") -> str:
    """A request body as raw JSON text: rows may hold what json.dumps cannot write (1e309, a `\\ud800` escape)."""
    return f'{{"name": "{name}", "rows": [{", ".join(rows)}]}}'


@pytest.mark.parametrize(("body", "loc", "msg"), [
    (_body(json.dumps(_row()), json.dumps(_row(seed=1, n_total=1e30))),
     ["body", "rows", "2", "n_total"], "1e+30 is too large for the store"),
    (_body(json.dumps(_row(seed=2**63))), ["body", "rows", "1", "seed"],
     "9223372036854775808 is too large"),
    (_body(json.dumps(_row()).replace('"0.5"', "1e309")), ["body", "rows", "1",
                                                                                     "robust_acc"], "not a number"),
    (_body(json.dumps(_row(params="1" * 5000))), ["body", "rows", "1", "params"],
     "too large for the store (at most 19 digits)"),
    (_body(json.dumps(_row(arch="wrn\ud800"))), ["body", "rows", "1", "arch"],
     "not storable"),
    (_body(json.dumps(_row(note="a\u0000b"))), ["body", "rows", "1", "note"],
     "holds a NUL"),
    (_body(json.dumps(_row(note=[1e309]))), ["body", "rows", "1", "note"],
     "not finite"),
    (_body(json.dumps(_row(seed=True))), ["body", "rows", "1", "seed"],
     "bool is not a number"),
    (_body(json.dumps(_row()), name="r\\ud800"), ["body", "name"], "unicode"),
    (_body(json.dumps(_row()), name="r\\u0000x"), ["body", "name"], "holds a NUL"),
])
def test_api_rejects_what_the_store_cannot_hold_with_422(client: TestClient, db: str, body: str, loc: list[str],
                                                         msg: str) -> None:
    r = client.post("/api/v1/sweeps/import", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == loc and msg in err["msg"], err
    assert _stored(db) == (0, 0)
