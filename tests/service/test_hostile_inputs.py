"""Inputs a hostile or careless client sends, answered 422 (naming the field and where it was), 409 or 503, never
500: numbers no database column holds, ids past int64, `³` (whose `isdigit` is true), an unknown attack on a page,
lifecycle actions on an imported reference, plots of a reference that states no lambda, an evaluation with the Ray
head down. A SQLite store with one run sweep (two finished trials) and one imported reference (lam not stated)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from testkit.api_server import free_port

from db.contract import EpochReport, FinalRow
from db.engine import make_engine, session_factory, upgrade
from db.results import upsert_epoch, upsert_final
from db.sweeps import create_sweep, list_trials, mark_trial, set_sweep_status
from service.settings import Settings

BIG_INT = str(2**63)  # one past the largest 64-bit integer
REFERENCE_ROWS = [{"arch": f"wrn-d1-1-1-w{w}-{w}-{w}", "method": "trades", "eps": 8 / 255, "norm": "linf",
                   "dataset": "cifar10", "checkpoint": "best", "attack": "pgd20", "clean_acc": 0.8,
                   "robust_acc": 0.4 + w / 100} for w in (1, 2)]  # no lam: the paper states none
REFERENCE_EPOCHS = [{**REFERENCE_ROWS[0], "checkpoint": None, "attack": None, "epoch": e, "robust_acc": 0.3}
                    for e in (1, 2)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    engine = make_engine(url)
    upgrade(engine)
    trials = [{"config": {}, "config_hash": f"h{i}", "arch": "a", "depths": "1-1-1", "widths": f"{i + 1}-1-1",
               "params": 1000 * (i + 1), "macs": 10, "method": "sat", "lam": 1.0, "eps": 8 / 255, "norm": "linf",
               "dataset": "synthetic", "n_train": None, "seed": 0} for i in range(2)]
    with session_factory(engine).begin() as s:
        sweep = create_sweep(s, name="run", spec={}, code_version="test", trials=trials)
        set_sweep_status(s, sweep_id=sweep.id, status="running", actor="driver")
        for t in sweep.trials:
            mark_trial(s, trial_id=t.id, status="running", actor="writer")
            upsert_epoch(s, trial_id=t.id, report=EpochReport(epoch=1, robust_acc=0.2))
            upsert_final(s, trial_id=t.id, row=FinalRow(checkpoint="best", attack="pgd20", epoch=1, robust_acc=0.3,
                                                        n_total=100, n_robust=30))
            mark_trial(s, trial_id=t.id, status="completed", actor="writer")
        set_sweep_status(s, sweep_id=sweep.id, status="completed", actor="driver")
    engine.dispose()
    return Settings(database_url=url, storage_path=str(tmp_path / "ray"), published_dir=None,
                    ray_address=f"http://127.0.0.1:{free_port()}")  # nothing listens there: Ray is down


@pytest.fixture
def client(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from testkit.api_client import api_client

    monkeypatch.setenv("RAY_AUTH_TOKEN", "test-token")  # never write ~/.ray/auth_token from a test
    with api_client(settings) as c:
        rows = [{k: v for k, v in r.items() if v is not None} for r in REFERENCE_ROWS + REFERENCE_EPOCHS]
        r = c.post("/api/v1/sweeps/import", json={"name": "paper", "source": "a paper", "rows": rows})
        assert r.status_code == 201 and r.json()["sweep_id"] == 2, r.text
        yield c


def _error(r: Any) -> dict[str, Any]:
    assert r.status_code == 422, (r.status_code, r.text)
    (err,) = r.json()["detail"]
    return err


# ------------------------------------------------------------------------- numbers no database column holds: 422


@pytest.mark.parametrize(("params", "loc", "words"), [
    ({"eps": "1e309"}, ["query", "eps"], "beyond the range of a 64-bit float"),
    ({"eps": "1e400/1e-400"}, ["query", "eps"], "beyond the range"),
    ({"eps": "1e999999999/1"}, ["query", "eps"], "beyond the range"),  # no Fraction of 10**999999999
    ({"lam": "-1e309"}, ["query", "lam"], "beyond the range"),
    ({"params__gte": "1e309"}, ["query", "params__gte"], "beyond the range"),
    ({"robust_acc__lt": "9" * 400}, ["query", "robust_acc__lt"], "not a number"),
    ({"seed": BIG_INT}, ["query", "seed"], "outside the database's 64-bit integer range"),
    ({"trial": "-" + str(2**63 + 1)}, ["query", "trial"], "64-bit integer range"),
    ({"params": "1e20"}, ["query", "params"], "not an integer"),
    ({"offset": BIG_INT}, ["query", "offset"], "less than or equal to 9223372036854775807"),
    ({"sort": "-nope"}, ["query", "sort"], "'nope' is not a scalar result field"),
])
def test_results_filters_beyond_the_columns_are_422_in_the_query(client: TestClient, params, loc, words) -> None:
    err = _error(client.get("/api/v1/results", params=params))
    assert err["loc"] == loc and words in err["msg"], err


def test_in_range_extremes_still_answer(client: TestClient) -> None:
    r = client.get("/api/v1/results", params={"seed": str(2**63 - 1), "eps": "1e308", "params__lt": "1e300"})
    assert r.status_code == 200 and r.json() == [] and r.headers["X-Total-Count"] == "0"
    r = client.get("/api/v1/results", params={"offset": str(2**63 - 1)})
    assert r.status_code == 200 and r.json() == [] and r.headers["X-Total-Count"] == "4"
    r = client.get("/api/v1/results", params={"sweep": "99999999999999999999"})  # not an id: looked up as a name
    assert r.status_code == 200 and r.json() == []
    r = client.get("/api/v1/results", params={"sweep": "³"})
    assert r.status_code == 200 and r.json() == []


@pytest.mark.parametrize(("params", "field"), [({"trial": "1e20"}, "trial"), ({"trial": "99999999999999999999"},
                                                                               "trial"),
                                               ({"eps": "1e309"}, "eps"), ({"maximize": "up"}, "maximize")])
def test_pareto_filters_beyond_the_columns_are_422(client: TestClient, params, field) -> None:
    assert _error(client.get("/api/v1/pareto", params=params))["loc"] == ["query", field]


@pytest.mark.parametrize("url", ["/api/v1/sweeps/{big}/evaluate", "/api/v1/sweeps/100000000000000000000/evaluate",
                                 "/api/v1/sweeps/0/evaluate"])
def test_every_path_id_is_bounded(client: TestClient, url: str) -> None:
    err = _error(client.post(url.format(big=BIG_INT), json={}))
    assert err["loc"] == ["path", "sweep_id"]


@pytest.mark.parametrize(("body", "loc"), [({"trials": [10**20]}, ["body", "trials", 0]),
                                           ({"eps": ["inf"]}, ["body", "eps", 0])])
def test_evaluate_bodies_are_bounded(client: TestClient, body, loc) -> None:
    assert _error(client.post("/api/v1/sweeps/1/evaluate", json=body))["loc"] == loc


@pytest.mark.parametrize(("url", "loc"), [
    (f"/compare?run={BIG_INT}&reference=2", ["query", "run"]),
    (f"/compare?run=1&reference={BIG_INT}", ["query", "reference", 0]),
    ("/api/v1/sweeps/1/plots/pareto.png?reference=³", ["query", "reference"]),
    (f"/api/v1/sweeps/1/plots/pareto.png?reference={BIG_INT}", ["query", "reference"]),
    ("/sweeps/1?attack=foo", ["query", "attack"]),
    ("/sweeps/1?checkpoint=middle", ["query", "checkpoint"]),
    ("/sweeps/1?sort=nope", ["query", "sort"]),
    ("/api/v1/sweeps/1/plots/pareto.png?attack=foo", ["query", "attack"]),
])
def test_query_values_no_sweep_can_have_are_422_in_the_query(client: TestClient, url: str, loc) -> None:
    err = _error(client.get(url))
    assert err["loc"] == loc, err


def test_references_by_name_and_id_still_resolve(client: TestClient) -> None:
    for ref in ("2", "paper", " 2"):
        r = client.get("/api/v1/sweeps/1/plots/pareto.svg", params={"reference": ref})
        assert r.status_code == 200 and b"paper (reference)" in r.content, ref
    assert client.get("/api/v1/sweeps/1/plots/pareto.svg", params={"reference": "9"}).status_code == 404


# ------------------------------------------------------------------------------------- an imported reference


@pytest.mark.parametrize(("action", "body"), [("resume", None), ("extend", {"patch": {"seeds": [0, 1]}}),
                                              ("cancel", None)])
def test_lifecycle_of_an_imported_reference_is_409(client: TestClient, action: str, body) -> None:
    r = client.post(f"/api/v1/sweeps/2/{action}", json=body)
    assert r.status_code == 409, r.text
    assert "imported reference" in r.json()["detail"] and f"nothing to {action}" in r.json()["detail"]
    sweep = client.get("/api/v1/sweeps/2").json()
    assert (sweep["status"], sweep["counts"]["completed"]) == ("completed", 2)


@pytest.mark.parametrize("kind", ["eps", "lambda-width", "pareto"])
@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_plots_of_a_reference_without_lambda(client: TestClient, kind: str, fmt: str) -> None:
    r = client.get(f"/api/v1/sweeps/2/plots/{kind}.{fmt}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(f"image/{fmt}")
    if kind == "lambda-width" and fmt == "svg":
        assert b"no final rows with robust_acc and a lambda" in r.content
    if kind == "eps" and fmt == "svg":
        assert b"lam not stated" in r.content


def test_curves_of_a_reference_trial_without_lambda(client: TestClient, settings: Settings) -> None:
    with session_factory(make_engine(settings.database_url))() as s:
        tid = next(t.id for t in list_trials(s, sweep_id=2) if t.arch == REFERENCE_ROWS[0]["arch"])
    r = client.get(f"/api/v1/trials/{tid}/plots/curves.svg")
    assert r.status_code == 200 and b"lam not stated" in r.content, r.text


# --------------------------------------------------------------------------------------------- Ray head down


def test_evaluate_with_the_ray_head_down_is_503(client: TestClient) -> None:
    r = client.post("/api/v1/sweeps/1/evaluate", json={"trials": [1], "attack": "pgd20", "checkpoints": ["last"]})
    assert r.status_code == 503, r.text
    assert "does not answer" in r.json()["detail"] and "127.0.0.1" in r.json()["detail"]


# ---------------------------------------------------------------------------------- a bool is not a number; Allow


@pytest.mark.parametrize(("field", "value", "index"), [("lam", False, 0), ("lam", [1, True], 1), ("eps", True, 0),
                                                     ("gamma", [True], 0)])
def test_a_boolean_is_not_a_number_in_a_spec(client: TestClient, field: str, value: Any, index: int) -> None:
    spec = {"depths": [[1], [1], [1]], "widths": [[1], [1], [1]], "dataset": "synthetic", field: value}
    err = _error(client.post("/api/v1/plan", json={"spec": spec}))
    assert err["loc"] == ["body", "spec", field, index] and "a boolean is not a number" in err["msg"], err
    ok = client.post("/api/v1/plan", json={"spec": {**spec, field: 1 if field == "gamma" else 0}})
    assert ok.status_code == 200, ok.text  # 0 and 1 as numbers are fine


@pytest.mark.parametrize(("method", "url", "allow"), [
    ("OPTIONS", "/api/v1/sweeps", "GET, POST"),  # Starlette's 405 said `Allow: POST` (the first route's)
    ("DELETE", "/api/v1/sweeps", "GET, POST"),
    ("OPTIONS", "/api/v1/sweeps/1", "GET"),
    ("PUT", "/api/v1/sweeps/1/resume", "POST"),
    ("OPTIONS", "/api/v1/results", "GET"),
    ("POST", "/sweeps/1", "GET"),
    ("OPTIONS", "/api/v1/sweeps/import", "POST"),  # not also GET: /sweeps/{sweep_id} does not own this path
    ("GET", "/api/v1/sweeps/1/cancel", "POST"),
    ("GET", "/api/v1/sweeps/import", "POST"),  # was 422: GET /sweeps/{sweep_id} took "import" for an id
])
def test_method_not_allowed_names_every_method_of_the_path(client: TestClient, method: str, url: str,
                                                            allow: str) -> None:
    r = client.request(method, url)
    assert (r.status_code, r.headers["allow"]) == (405, allow)


@pytest.mark.parametrize("ref", ["trial:³", "trial:٣", f"trial:{2**63}", "trial:1e3"])
def test_init_from_names_a_database_id(client: TestClient, ref: str) -> None:
    """`trial:³` passed the spec (`isdigit`) and failed later in int(), in eps* and the trainer."""
    spec = {"depths": [[1], [1], [1]], "widths": [[1], [1], [1]], "dataset": "synthetic",
            "training": {"init_from": ref}}
    err = _error(client.post("/api/v1/plan", json={"spec": spec}))
    assert "expected 'trial:<id>'" in err["msg"] and err["loc"] == ["body", "training", "init_from"], err
    ok = client.post("/api/v1/plan", json={"spec": {**spec, "training": {"init_from": "trial:12"}}})
    assert ok.status_code == 200, ok.text
