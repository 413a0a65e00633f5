"""GET /results: ranges, lists, sorting, pagination with the total, CSV/Parquet with standard errors, seeds
aggregated; GET /presets; GET /sweeps counts; POST /plan without a data root and with dotted overrides; the CLI's
`results --where FIELD__gte=` and its `0.184 ± 0.017` table. A SQLite store filled through db/ functions."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from db.contract import RESULT_FIELDS, FinalRow
from db.engine import make_engine, session_factory, upgrade
from db.results import upsert_final
from db.sweeps import create_sweep, mark_trial
from service.cli import app
from service.settings import Settings

# (arch, seed, params, n_robust of 500)
TRIALS = [("a", 0, 1000, 100), ("a", 1, 1000, 120), ("b", 0, 3000, 200), ("c", 0, 2000, 150)]


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    engine = make_engine(url)
    upgrade(engine)
    trials = [{"config": {}, "config_hash": f"h{i}", "arch": arch, "depths": "1-1-1", "widths": "1-1-1",
               "params": params, "macs": 10 * params, "method": "sat", "lam": 1.0, "eps": 8 / 255, "norm": "linf",
               "dataset": "cifar10", "n_train": None, "seed": seed}
              for i, (arch, seed, params, _) in enumerate(TRIALS)]
    with session_factory(engine).begin() as s:
        sweep = create_sweep(s, name="s", spec={}, code_version="test", trials=trials)
        for t, (_, _, _, n_robust) in zip(sweep.trials, TRIALS, strict=True):
            mark_trial(s, trial_id=t.id, status="running", actor="writer")
            upsert_final(s, trial_id=t.id, row=FinalRow(
                checkpoint="best", attack="pgd20", epoch=2, clean_acc=0.6, robust_acc=n_robust / 500,
                stability=0.5, n_total=500, n_correct=300, n_stable=250, n_robust=n_robust))
            mark_trial(s, trial_id=t.id, status="completed", actor="writer")
    engine.dispose()
    return url


@pytest.fixture
def client(url: str, tmp_path: Path) -> Iterator[TestClient]:
    from testkit.api_client import api_client

    with api_client(Settings(database_url=url, storage_path=str(tmp_path), published_dir=None,
                             data_roots=[str(tmp_path)])) as c:  # a request's data_root may name a dir below it
        yield c


def _arches(client: TestClient, **params: Any) -> list[str]:
    r = client.get("/api/v1/results", params=params)
    assert r.status_code == 200, r.text
    return [row["arch"] for row in r.json()]


def test_ranges_lists_and_sorting(client: TestClient) -> None:
    assert _arches(client, robust_acc__gte="0.3") == ["b", "c"]  # 0.4, 0.3 (0.3 >= 0.3)
    assert _arches(client, robust_acc__gt="0.3") == ["b"]
    assert _arches(client, params__lt="2e3", robust_acc__lte="0.2") == ["a"]
    assert _arches(client, arch="a,c", sort="-robust_acc") == ["c", "a", "a"]
    assert _arches(client, sort="-params,robust_acc") == ["b", "c", "a", "a"]
    r = client.get("/api/v1/results", params={"arch__gte": "a"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "arch__gte"
    r = client.get("/api/v1/results", params={"sort": "-nope"})
    assert r.status_code == 422 and "nope" in r.text


def test_pagination_reports_the_total(client: TestClient) -> None:
    r = client.get("/api/v1/results", params={"limit": 2, "offset": 1, "sort": "params"})
    assert r.status_code == 200
    assert (r.headers["X-Total-Count"], r.headers["X-Limit"], r.headers["X-Offset"]) == ("4", "2", "1")
    assert [row["params"] for row in r.json()] == [1000, 2000]
    over = client.get("/api/v1/results", params={"limit": 10_001})
    assert over.status_code == 422 and over.json()["detail"][0]["loc"][-1] == "limit"
    assert client.get("/api/v1/results", params={"limit": 10_000}).status_code == 200


def test_standard_errors_in_json_csv_and_parquet(client: TestClient) -> None:
    row = client.get("/api/v1/results", params={"arch": "b"}).json()[0]
    assert row["robust_acc_se"] == pytest.approx(math.sqrt(0.4 * 0.6 / 500))
    assert row["clean_acc_se"] == pytest.approx(math.sqrt(0.24 / 500))
    csv = pd.read_csv(io.StringIO(client.get("/api/v1/results", params={"format": "csv"}).text))
    assert list(csv.columns) == [*RESULT_FIELDS, "clean_acc_se", "robust_acc_se", "stability_se"]
    pq = client.get("/api/v1/results", params={"format": "parquet", "sort": "-robust_acc"})
    assert pq.status_code == 200 and pq.headers["X-Total-Count"] == "4"
    frame = pd.read_parquet(io.BytesIO(pq.content))
    assert list(frame["arch"]) == ["b", "c", "a", "a"]
    assert frame["stability_se"].iloc[0] == pytest.approx(math.sqrt(0.25 / 500))


def test_seeds_aggregated(client: TestClient) -> None:
    r = client.get("/api/v1/results", params={"aggregate": "seeds", "sort": "arch"})
    assert r.status_code == 200 and r.headers["X-Total-Count"] == "3"
    a = r.json()[0]
    assert (a["arch"], a["n_seeds"], a["seeds"], a["n_total"], a["n_robust"]) == ("a", 2, [0, 1], 1000, 220)
    assert a["robust_acc"] == pytest.approx(0.22) and a["robust_acc_std"] == pytest.approx(math.sqrt(2) * 0.02)
    assert a["robust_acc_se"] == pytest.approx(math.sqrt(0.22 * 0.78 / 1000))
    csv = client.get("/api/v1/results", params={"aggregate": "seeds", "format": "csv"}).text.splitlines()
    assert "n_seeds" in csv[0] and "robust_acc_std" in csv[0] and len(csv) == 4


def test_presets_sweep_counts_and_plan(client: TestClient, tmp_path: Path) -> None:
    presets = {p["name"]: p for p in client.get("/api/v1/presets").json()}
    assert presets["demo"]["n_trials"] == 4 and presets["huang2021-depth-125"]["n_trials"] == 125
    assert presets["demo"]["description"]
    sweeps = client.get("/api/v1/sweeps").json()
    assert sweeps[0]["counts"]["completed"] == 4 and sweeps[0]["counts"]["queued"] == 0
    missing = str(tmp_path / "no-such-root")
    for overrides in ({"dataset": "cifar10", "training.n_test": 100}, {"dataset": "cifar10", "training": {"n_test": 100}}):
        r = client.post("/api/v1/plan", json={"preset": "demo", "overrides": overrides, "data_root": missing})
        assert r.status_code == 200, r.text
        assert r.json()["totals"]["n_trials"] == 4
    sub = client.post("/api/v1/sweeps", json={"preset": "demo", "overrides": {"dataset": "cifar10"},
                                              "data_root": missing})
    assert sub.status_code == 422 and sub.json()["detail"][0]["loc"][-1] == "data_root"  # submitting needs it


def test_cli_where_ranges_and_plus_minus_table(url: str) -> None:
    res = CliRunner().invoke(app, ["results", "--where", "robust_acc__gte=0.3", "--sort", "-robust_acc",
                                   "--database-url", url])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "0.400 ± 0.022" in lines[1] and "0.300 ± 0.020" in lines[2] and len(lines) == 3
    bad = CliRunner().invoke(app, ["results", "--where", "arch__lt=b", "--database-url", url])
    assert bad.exit_code == 2 and "arch__lt" in bad.output
