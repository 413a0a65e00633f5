"""The result contract as users see it: CSV headers, JSON rows, eps filters as people write them, canonical attack
keys, the Pareto route's `attack=`; API and CLI alike, on a real SQLite store filled through db/ functions."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from db.attempts import record_attempt
from db.contract import RESULT_FIELDS, EpochReport, FinalRow
from db.engine import make_engine, session_factory, upgrade
from db.results import upsert_epoch, upsert_final
from db.sweeps import create_sweep, mark_trial
from search_spaces.spec import SpecError
from service.filters import parse_filters, parse_float

E = 1 / 255


def _trial(i: int, eps: float, params: int) -> dict[str, Any]:
    return {"config": {"eps": eps}, "config_hash": f"h{i}", "arch": f"wrn-d{i}-1-1-w1-1-1", "depths": f"{i}-1-1",
            "widths": "1-1-1", "params": params, "macs": 10 * params, "method": "sat", "lam": 1.0, "eps": eps,
            "norm": "linf", "dataset": "cifar10-jpeg", "n_train": None, "seed": 0}


@pytest.fixture
def url(tmp_path: Path) -> str:
    """Sweep `s`: trials at eps 2/255, 8/255, 8/255 with epoch rows and best-checkpoint pgd20 rows (and one
    autoattack row), the counts of 100 test images each."""
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        sweep = create_sweep(s, name="s", spec={}, code_version="test",
                             trials=[_trial(1, 2 * E, 1000), _trial(2, 8 * E, 2000), _trial(3, 8 * E, 3000)])
        for k, t in enumerate(sweep.trials):
            mark_trial(s, trial_id=t.id, status="running", actor="writer")
            for e in (1, 2):
                upsert_epoch(s, trial_id=t.id, report=EpochReport(epoch=e, clean_loss_val=1.0 + k, adv_loss_val=2.0,
                                                                  device_seconds=1.5))
            n_robust = [30, 40, 35][k]
            upsert_final(s, trial_id=t.id, row=FinalRow(
                checkpoint="best", attack="pgd20", epoch=2, clean_acc=0.6, robust_acc=n_robust / 100, stability=0.5,
                n_total=100, n_correct=60, n_stable=50, n_robust=n_robust, emp_lipschitz_blocks=[1.0, 2.5],
                device_seconds=4.0))
            mark_trial(s, trial_id=t.id, status="completed", actor="writer", device_seconds=7.0)
            record_attempt(s, trial_id=t.id, device="cpu", node="host 127.0.0.1")
        upsert_final(s, trial_id=sweep.trials[2].id, row=FinalRow(checkpoint="best", attack="autoattack", epoch=2,
                                                                  robust_acc=0.33, n_total=100, n_robust=33))
    engine.dispose()
    return url


@pytest.fixture
def client(url: str, tmp_path: Path) -> Iterator[TestClient]:
    from service.settings import Settings
    from testkit.api_client import api_client

    with api_client(Settings(database_url=url, storage_path=str(tmp_path))) as c:
        yield c


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_parse_float_matches_to_the_precision_written() -> None:
    assert parse_float("eps", "8/255").value == pytest.approx(8 / 255)
    approx = parse_float("eps", "0.0314")
    assert (approx.value, approx.tol) == (0.0314, pytest.approx(5e-5))
    assert abs(8 / 255 - approx.value) <= approx.tol and not abs(8 / 255 - 0.0313) <= parse_float("eps", "0.0313").tol
    assert parse_float("eps", "3e-2").tol == pytest.approx(5e-3) and parse_float("lam", "6").tol < 1e-6
    for bad in ("8/0", "abc", "nan", ""):
        with pytest.raises(SpecError) as e:
            parse_float("eps", bad)
        assert e.value.field == "eps"
    with pytest.raises(SpecError, match="not an attack key"):
        parse_filters([("attack", "pgd")], reserved=set())
    with pytest.raises(SpecError, match="list-valued"):
        parse_filters([("emp_lipschitz_blocks", "1")], reserved=set())


def test_csv_carries_the_contract_columns(client: TestClient) -> None:
    final = client.get("/api/v1/results", params={"format": "csv"})
    assert final.status_code == 200
    header = final.text.splitlines()[0].split(",")
    assert header == [*RESULT_FIELDS, "clean_acc_se", "robust_acc_se", "stability_se"] and "flops" not in header
    assert {"macs", "device_seconds", "n_correct", "n_stable", "n_robust", "emp_lipschitz_blocks"} <= set(header)
    rows = _csv(final.text)
    assert [(r["macs"], r["n_correct"], r["n_robust"], r["device_seconds"]) for r in rows[:1]] == [
        ("10000", "60", "30", "4.0")]
    assert rows[0]["emp_lipschitz_blocks"] == "[1.0, 2.5]"
    epochs = _csv(client.get("/api/v1/results", params={"format": "csv", "kind": "epoch"}).text)
    assert len(epochs) == 6 and epochs[0]["clean_loss_val"] == "1.0" and epochs[0]["clean_loss_test"] == ""
    js = client.get("/api/v1/results").json()
    assert js[0]["emp_lipschitz_blocks"] == [1.0, 2.5] and js[0]["n_stable"] == 50


def test_eps_filters_as_people_write_them(client: TestClient) -> None:
    def trials(**params: str) -> list[int]:
        r = client.get("/api/v1/results", params={"attack": "pgd20", **params})
        assert r.status_code == 200, r.text
        return [row["trial"] for row in r.json()]

    eight = trials(eps="8/255")
    assert len(eight) == 2
    assert trials(eps="0.0314") == eight == trials(eps=str(8 / 255))
    assert trials(eps="0.0078") == trials(eps="2/255") and len(trials(eps="2/255")) == 1
    none = client.get("/api/v1/results", params={"eps": "0.05"})
    assert none.status_code == 422
    detail = none.json()["detail"][0]
    assert detail["loc"][-1] == "eps" and "2/255 (0.00784)" in detail["msg"] and "8/255 (0.03137)" in detail["msg"]
    bad = client.get("/api/v1/results", params={"eps": "eight"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "eps"


def test_pareto_takes_an_attack_key(client: TestClient) -> None:
    pgd = client.get("/api/v1/pareto", params={"x": "params", "y": "robust_acc"}).json()
    assert [(p["params"], p["robust_acc"]) for p in pgd["front"]] == [(1000, 0.30), (2000, 0.40)]
    aa = client.get("/api/v1/pareto", params={"x": "macs", "y": "robust_acc", "attack": "autoattack"}).json()
    assert [(p["macs"], p["attack"]) for p in aa["front"]] == [(30000, "autoattack")]
    missing = client.get("/api/v1/pareto", params={"attack": "cw20"})
    assert missing.status_code == 422 and "autoattack, pgd20" in missing.json()["detail"][0]["msg"]
    assert client.get("/api/v1/pareto", params={"attack": "pgd"}).status_code == 422


def test_trials_carry_provenance_and_device_seconds(client: TestClient) -> None:
    trials = client.get("/api/v1/sweeps/1/trials").json()
    assert [(t["device_seconds"], t["device"], t["node"], t["macs"]) for t in trials][0] == (
        7.0, "cpu", "host 127.0.0.1", 10000)
    curves = client.get(f"/api/v1/trials/{trials[0]['id']}/curves").json()
    assert [(c["epoch"], c["clean_loss_val"], c["device_seconds"]) for c in curves] == [(1, 1.0, 1.5), (2, 1.0, 1.5)]


def test_cli_results_where_eps(url: str, tmp_path: Path) -> None:
    from service.cli import app

    def run(*args: str) -> Any:
        return CliRunner().invoke(app, ["results", "--database-url", url, *args])

    by_fraction = run("--where", "eps=8/255", "--where", "attack=pgd20", "--format", "csv")
    by_decimal = run("--where", "eps=0.0314", "--where", "attack=pgd20", "--format", "csv")
    assert by_fraction.exit_code == 0, by_fraction.output
    rows = _csv(by_fraction.stdout)
    assert len(rows) == 2 and by_decimal.stdout == by_fraction.stdout
    assert {"macs", "device_seconds", "n_correct", "n_stable", "n_robust"} <= set(rows[0])
    table = run("--sweep", "s")
    assert table.exit_code == 0 and "n_robust" in table.stdout and "macs" in table.stdout
    none = run("--where", "eps=0.05")
    assert none.exit_code == 2 and "eps values present: 2/255" in none.output
    bad = run("--where", "eps")
    assert bad.exit_code == 2 and "FIELD=VALUE" in bad.output
    front = CliRunner().invoke(app, ["pareto", "--database-url", url, "--x", "macs", "--attack", "autoattack"])
    assert front.exit_code == 0 and "autoattack" in front.stdout and "30000" in front.stdout


def test_the_demo_table_shows_a_checkpoint_evaluated_once_once() -> None:
    from service.exports import collapse_best_last

    rows = [{"trial": 1, "attack": "pgd20", "checkpoint": "best", "epoch": 3, "robust_acc": 0.4},
            {"trial": 1, "attack": "pgd20", "checkpoint": "last", "epoch": 3, "robust_acc": 0.4},
            {"trial": 2, "attack": "pgd20", "checkpoint": "best", "epoch": 2, "robust_acc": 0.3},
            {"trial": 2, "attack": "pgd20", "checkpoint": "last", "epoch": 3, "robust_acc": 0.2}]
    assert [(r["trial"], r["checkpoint"]) for r in collapse_best_last(rows)] == [
        (1, "best=last"), (2, "best"), (2, "last")]
