"""Import of external results through the CLI and the API, and the published references loaded once: a 2,000-row
CSV imports and its Pareto front (`robustgrid pareto --json`) equals a brute-force front in (params or macs,
robust accuracy); a bad row rejects the file naming row and field."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from db.engine import make_engine, session_factory, upgrade
from db.models import Sweep
from service.cli import app
from service.references import count_wrn, load_published
from service.settings import Settings

FIELDS = ["arch", "params", "method", "lam", "eps", "norm", "dataset", "seed", "checkpoint", "attack", "clean_acc",
          "robust_acc", "n_total", "n_correct", "n_robust", "note"]


def _rows(n: int) -> list[dict[str, Any]]:
    """n final rows: 250 WRN archs x 2 seeds x (best, last) x (pgd20, fgsm) = 2,000; params from the file for
    half the archs (the rest counted), robust accuracy from counts of 1,000 images."""
    rng = random.Random(0)
    rows = []
    archs = [f"wrn-d{a}-{b}-1-w{w}-{w}-{w}" for a in range(1, 6) for b in range(1, 6) for w in range(1, 11)]
    for k, arch in enumerate(archs):
        for seed in (0, 1):
            for ckpt in ("best", "last"):
                for attack in ("pgd20", "fgsm"):
                    n_robust, n_correct = rng.randint(200, 600), rng.randint(600, 900)
                    rows.append({"arch": arch, "params": str(1000 + 37 * k) if k % 2 else "", "method": "sat",
                                 "lam": "1", "eps": "0.03137254901960784", "norm": "linf", "dataset": "cifar10",
                                 "seed": str(seed), "checkpoint": ckpt, "attack": attack,
                                 "clean_acc": str(n_correct / 1000), "robust_acc": str(n_robust / 1000),
                                 "n_total": "1000", "n_correct": str(n_correct), "n_robust": str(n_robust),
                                 "note": f"row {len(rows) + 1}"})
    assert len(rows) == n
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


def _brute_front(points: list[tuple[int, float, int]]) -> set[int]:
    """Trial ids not dominated in (x min, y max), by comparing every pair."""
    return {t for x, y, t in points
            if not any(x2 <= x and y2 >= y and (x2 < x or y2 > y) for x2, y2, _ in points)}


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    upgrade(make_engine(url))
    return url


def test_cli_imports_2000_rows_and_pareto_json_equals_brute_force(db: str, tmp_path: Path) -> None:
    rows = _rows(2000)
    path = _write(tmp_path / "ext.csv", rows)
    runner = CliRunner()
    res = runner.invoke(app, ["results", "import", str(path), "--sweep", "ext", "--database-url", db])
    assert res.exit_code == 0, res.output
    assert "imported 2000 final and 0 per-epoch rows as 500 trials" in res.output
    for x in ("params", "macs"):
        out = runner.invoke(app, ["pareto", "--sweep", "ext", "--x", x, "--y", "robust_acc", "--json",
                                  "--database-url", db])
        assert out.exit_code == 0, out.output
        got = json.loads(out.output)
        assert got["metrics"] == [x, "robust_acc"] and got["maximize"] == [False, True]
        with session_factory(make_engine(db))() as s:
            from db.results import query_results

            best = query_results(s, filters={"sweep": "ext", "checkpoint": "best", "attack": "pgd20"})
        assert len(best) == 500
        want = _brute_front([(r[x], r["robust_acc"], r["trial"]) for r in best])
        assert {p["trial"] for p in got["front"]} == want and got["n_points"] == len(want) > 1
        for p in got["front"]:
            assert p["robust_acc_se"] == pytest.approx((p["robust_acc"] * (1 - p["robust_acc"]) / 1000) ** 0.5)
            assert p["within_noise"] in (True, False)
        assert got["front_within_noise"] is any(p["within_noise"] for p in got["front"]) and got["note"]
    counted = [r for r in best if r["arch"] == "wrn-d1-1-1-w1-1-1"][0]
    assert (counted["params"], counted["macs"]) == count_wrn("wrn-d1-1-1-w1-1-1", "cifar10")


def test_cli_rejects_the_file_at_the_bad_row(db: str, tmp_path: Path) -> None:
    rows = _rows(2000)
    rows[1234]["eps"] = "8"
    path = _write(tmp_path / "ext.csv", rows)
    res = CliRunner().invoke(app, ["results", "import", str(path), "--sweep", "ext", "--database-url", db])
    assert res.exit_code == 2
    assert "row 1235 (line 1236): eps: 8.0 is outside [0, 1]" in res.output and "nothing was imported" in res.output
    with session_factory(make_engine(db))() as s:
        assert s.query(Sweep).count() == 0


@pytest.fixture
def client(db: str, tmp_path: Path) -> Iterator[TestClient]:
    from testkit.api_client import api_client

    with api_client(Settings(database_url=db, storage_path=str(tmp_path), published_dir=None)) as c:
        yield c


def test_api_import_json_rows(client: TestClient) -> None:
    rows = [{k: v for k, v in r.items() if v != ""} for r in _rows(2000)[:8]]
    r = client.post("/api/v1/sweeps/import", json={"name": "ext", "source": "test", "rows": rows})
    assert r.status_code == 201, r.text
    assert {k: r.json()[k] for k in ("name", "n_trials", "n_final", "n_epoch")} == {
        "name": "ext", "n_trials": 2, "n_final": 8, "n_epoch": 0}
    again = client.post("/api/v1/sweeps/import", json={"name": "ext", "rows": rows})
    assert again.status_code == 409
    bad = [*rows[:3], {**rows[3], "attack": "pgd"}]
    r = client.post("/api/v1/sweeps/import", json={"name": "ext2", "rows": bad})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "rows", "4", "attack"]
    sweeps = {s["name"]: s for s in client.get("/api/v1/sweeps").json()}
    assert set(sweeps) == {"ext"} and sweeps["ext"]["counts"]["completed"] == 2
    front = client.get("/api/v1/pareto", params={"sweep": "ext"}).json()
    assert front["n_points"] >= 1 and "front_within_noise" in front


def test_published_references_load_once(db: str) -> None:
    published = Path(__file__).resolve().parents[3] / "shared" / "data" / "published"
    if not published.is_dir():
        pytest.skip("../shared/data/published is not present")
    sessions = session_factory(make_engine(db))
    assert load_published(sessions, published) == ["published-huang2021", "published-wu2021"]
    assert load_published(sessions, published) == []  # idempotent: a second start does nothing
    assert load_published(sessions, None) == []
    with sessions() as s:
        refs = {sw.name: sw for sw in s.query(Sweep)}
        assert all(sw.imported and sw.status == "completed" and "README" in sw.source for sw in refs.values())
        from db.results import query_results

        huang = query_results(s, filters={"sweep": "published-huang2021", "arch": "wrn-d5-5-5-w10-10-4"})
        assert [(r["params"], r["clean_acc"], r["robust_acc"]) for r in huang] == [(17_050_000, 0.87, 0.5499)]
