"""`POST /api/v1/sweeps/{id}/evaluate` and `robustgrid evaluate`: which trials a post-hoc evaluation picks, how a
bad request is answered, and (CLI --local, no Ray) that the rows it writes show in /results and /pareto?attack=."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from db.contract import FinalRow
from db.engine import make_engine, session_factory, upgrade
from db.results import upsert_final
from db.sweeps import create_sweep, mark_trial, set_sweep_status
from service.settings import Settings

# params, pgd20 robust accuracy (of 100): front (1000, .30), (2000, .50); (3000, .49) within 2 SE; (4000, .20) not
TRIALS = [(1000, 0.30), (2000, 0.50), (3000, 0.49), (4000, 0.20)]


def _trial(i: int, params: int, config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"config": config or {"eps": 8 / 255}, "config_hash": f"h{i}", "arch": f"wrn-d{i}-1-1-w1-1-1",
            "depths": f"{i}-1-1", "widths": "1-1-1", "params": params, "macs": 10 * params, "method": "sat",
            "lam": 1.0, "eps": 8 / 255, "norm": "linf", "dataset": "synthetic", "n_train": None, "seed": 0}


def _store(url: str, configs: list[dict[str, Any]] | None = None, status: str = "completed") -> list[int]:
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        sweep = create_sweep(s, name="s", spec={}, code_version="t",
                             trials=[_trial(i, p, configs[i] if configs else None) for i, (p, _) in enumerate(TRIALS)])
        set_sweep_status(s, sweep_id=sweep.id, status="running", actor="driver")
        for t, (_, r) in zip(sweep.trials, TRIALS, strict=True):
            mark_trial(s, trial_id=t.id, status="running", actor="writer")
            upsert_final(s, trial_id=t.id, row=FinalRow(checkpoint="best", attack="pgd20", epoch=2, robust_acc=r,
                                                        clean_acc=0.6, n_total=100, n_robust=round(100 * r),
                                                        n_correct=60, n_stable=70))
            mark_trial(s, trial_id=t.id, status="completed", actor="writer")
        if status != "running":
            set_sweep_status(s, sweep_id=sweep.id, status=status, actor="driver")
        ids = [t.id for t in sweep.trials]
    engine.dispose()
    return ids


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "ray_results"))


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The evaluation jobs the launcher was asked to submit (no Ray)."""
    from service import launcher

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(launcher, "ensure_ray_head", lambda settings: object())

    def submit(settings: Settings, cluster: object, **kw: Any) -> str:
        calls.append(kw)
        return f"job-{len(calls)}"

    monkeypatch.setattr(launcher, "submit_evaluation_job", submit)
    return calls


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    from testkit.api_client import api_client

    with api_client(settings) as c:
        yield c


def test_the_default_is_the_front_widened_by_two_standard_errors(settings, submitted, client) -> None:
    ids = _store(settings.database_url)
    r = client.post("/api/v1/sweeps/1/evaluate", json={})
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["selection"], body["trials"], body["n_candidates"], body["spared"]) == ("front", ids[:3], 4, 1)
    assert (body["attack"], body["checkpoints"], body["existing"], body["job_id"]) == (
        "autoattack", ["best", "last"], 0, "job-1")
    assert submitted == [{"sweep_id": 1, "trial_ids": ids[:3], "attack": "autoattack",
                          "checkpoints": ("best", "last"), "data_root": None, "force": False}]


def test_named_trials_and_existing_rows(settings, submitted, client) -> None:
    ids = _store(settings.database_url)
    with session_factory(make_engine(settings.database_url)).begin() as s:
        upsert_final(s, trial_id=ids[3], row=FinalRow(checkpoint="best", attack="pgd100", robust_acc=0.2,
                                                      n_total=100, n_robust=20))
    r = client.post("/api/v1/sweeps/1/evaluate", json={"trials": [ids[3]], "attack": "pgd100",
                                                        "checkpoints": ["best"]})
    assert r.status_code == 202 and r.json()["existing"] == 1 and r.json()["job_id"] is None  # nothing to run
    assert submitted == []
    r = client.post("/api/v1/sweeps/1/evaluate", json={"trials": [ids[3]], "attack": "pgd100",
                                                        "checkpoints": ["best"], "force": True})
    assert r.json()["job_id"] == "job-1" and submitted[0]["force"] is True


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"attack": "pgd20x"}, "attack", "not an attack key"),
    ({"attack": "gama20"}, "attack", "post-hoc"),
    ({"trials": [999]}, "trials", "not trials of sweep 1"),
    ({"trials": []}, "trials", "empty"),
    ({"checkpoints": ["middle"]}, "checkpoints", ""),
    ({"eps": [2 / 255]}, "front", "no best-checkpoint pgd20 rows"),
])
def test_bad_requests_name_the_field(settings, submitted, client, body, field, words) -> None:
    _store(settings.database_url)
    r = client.post("/api/v1/sweeps/1/evaluate", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert field in detail["loc"] and words in detail["msg"]
    assert submitted == []


def test_a_running_or_unknown_sweep(settings, submitted, client) -> None:
    _store(settings.database_url, status="running")
    assert client.post("/api/v1/sweeps/1/evaluate", json={}).status_code == 409
    assert client.post("/api/v1/sweeps/7/evaluate", json={}).status_code == 404
    assert submitted == []


def test_cli_local_rows_show_in_results_and_pareto(settings, tmp_path: Path, client) -> None:
    """A trained tiny trial's state saved as the trainable saves it; `robustgrid evaluate --local` re-attacks it
    with PGD-100 and the row is read back through the API."""
    from service.cli import app
    from workers.final_eval import train_and_evaluate
    from workers.trainable import STATE_FILE

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg_fields = {"depths": (1, 1, 1), "widths": (1, 1, 1), "dataset": "synthetic", "n_train": 320,
                      "val_size": 128, "n_test": 128, "epochs": 2, "batch_size": 64, "eps": 8 / 255,
                      "train_attack": {"steps": 2, "step_size": 0.01}, "eval_attack": {"steps": 3, "step_rel": 0.5}}
        from search_spaces.config import TrialConfig

        cfg = TrialConfig(**cfg_fields)
        state, _ = train_and_evaluate(cfg, device=torch.device("cpu"), data_root=None)
        ids = _store(settings.database_url, configs=[cfg.model_dump(mode="json")] * len(TRIALS))
        ckpt = Path(settings.storage_path) / "sweep-1-s" / f"trial-{ids[1]}" / "checkpoint_000001"
        ckpt.mkdir(parents=True)
        torch.save(state.to_dict(), ckpt / STATE_FILE)
        out = CliRunner().invoke(app, ["evaluate", "--sweep", "s", "--trials", str(ids[1]), "--attack", "pgd100",
                                       "--checkpoints", "best", "--local", "--database-url", settings.database_url,
                                       "--storage-path", settings.storage_path])
    finally:
        torch.set_num_threads(threads)
    assert out.exit_code == 0, out.output
    assert f"trial {ids[1]} " in out.output and "pgd100" in out.output
    rows = client.get("/api/v1/results", params={"attack": "pgd100"}).json()
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert [(r["trial"], r["checkpoint"], r["n_total"]) for r in rows] == [(ids[1], "best", 128)]
    front = client.get("/api/v1/pareto", params={"attack": "pgd100", "x": "params", "y": "robust_acc"})
    assert front.status_code == 200, front.text
    assert str(ids[1]) in front.text and "pgd100" in front.text
    bad = CliRunner().invoke(app, ["evaluate", "--sweep", "s", "--front", "--trials", "1",
                                   "--database-url", settings.database_url])
    assert bad.exit_code == 2 and "trials" in bad.output
