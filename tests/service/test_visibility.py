"""A non-admin token reads its owner's sweeps and the imported references, nowhere else: results, Pareto fronts,
curves, plots, eps* and the pages answer as if another owner's sweep did not exist (service.visibility)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from db.contract import EpochReport, FinalRow
from db.results import upsert_epoch, upsert_final
from db.sweeps import create_sweep, mark_trial
from service.settings import Settings
from testkit.api_client import api_client, new_token


def _trial(i: int) -> dict[str, Any]:
    return {"config": {"epochs": 1}, "config_hash": f"h{i}", "arch": f"wrn-d{i}-1-1-w1-1-1", "depths": f"{i}-1-1",
            "widths": "1-1-1", "params": 1000 * i, "macs": 10_000 * i, "method": "sat", "lam": 1.0, "eps": 0.0,
            "norm": "linf", "dataset": "cifar10-jpeg", "n_train": None, "seed": 0}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, int], dict[str, str]]]:
    """Sweeps of alice and bob and an imported reference, one finished trial each; tokens for both."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'v.db'}", storage_path=str(tmp_path), published_dir=None)
    with api_client(settings) as client:
        app: Any = client.app
        ids: dict[str, int] = {}
        with app.state.sessions.begin() as s:
            for i, (name, owner) in enumerate((("alices", "alice"), ("bobs", "bob"), ("paper", None)), start=1):
                sweep = create_sweep(s, name=name, spec={}, trials=[_trial(i)], code_version="t", owner=owner)
                sweep.imported = owner is None
                tid = sweep.trials[0].id
                mark_trial(s, trial_id=tid, status="running", actor="writer")
                upsert_epoch(s, trial_id=tid, report=EpochReport(epoch=1, clean_loss_val=1.0))
                upsert_final(s, trial_id=tid, row=FinalRow(checkpoint="best", attack="pgd20", epoch=1,
                                                           robust_acc=0.1 * i, n_total=100, n_robust=10 * i))
                mark_trial(s, trial_id=tid, status="completed", actor="writer")
                ids[name], ids[f"{name}-trial"] = sweep.id, tid
        tokens = {who: new_token(app, scope="read", owner=who) for who in ("alice", "bob")}
        yield client, ids, tokens


def _as(client: TestClient, token: str, url: str, **params: Any) -> Any:
    return client.get(url, params=params or None, headers={"Authorization": f"Bearer {token}"})


def test_results_and_fronts_hold_only_what_the_token_sees(world) -> None:
    client, ids, tokens = world
    sweeps = {r["sweep"] for r in _as(client, tokens["bob"], "/api/v1/results").json()}
    assert sweeps == {"bobs", "paper"}
    assert int(_as(client, tokens["bob"], "/api/v1/results").headers["X-Total-Count"]) == 2
    assert _as(client, tokens["bob"], "/api/v1/results", sweep="alices").json() == []
    front = _as(client, tokens["bob"], "/api/v1/pareto").json()["front"]
    assert {p["sweep"] for p in front} <= {"bobs", "paper"} and front
    assert {r["sweep"] for r in client.get("/api/v1/results").json()} == {"alices", "bobs", "paper"}  # admin


@pytest.mark.parametrize("url", ["/api/v1/sweeps/{alices}/epsilon-star", "/api/v1/sweeps/{alices}/plots/pareto.png",
                                 "/api/v1/trials/{alices-trial}/curves", "/api/v1/trials/{alices-trial}/plots/curves.svg",
                                 "/sweeps/{alices}", "/compare?run={bobs}&reference={alices}",
                                 "/api/v1/sweeps/{bobs}/plots/pareto.png?reference={alices}"])
def test_another_owners_sweep_is_not_found(world, url: str) -> None:
    client, ids, tokens = world
    path = url.format(**ids)
    assert _as(client, tokens["bob"], path).status_code == 404
    own = url.replace("{bobs}", "{paper}").format(**ids)  # the same request by alice, on what she may see
    assert _as(client, tokens["alice"], own).status_code in (200, 422), own  # 422: eps* of a sweep without eps 0


def test_the_index_page_lists_only_visible_sweeps(world) -> None:
    client, ids, tokens = world
    page = _as(client, tokens["bob"], "/").text
    assert "bobs" in page and "paper" in page and "alices" not in page
    assert _as(client, tokens["bob"], f"/sweeps/{ids['paper']}").status_code == 200  # references are everyone's
