"""Search sweeps: the search config's bad input, the candidate space, the Optuna searcher's budget and dedup, and two
real Ray Tune runs on a tiny synthetic grid (NSGA-II with a trial budget; ASHA early stopping)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from testkit.api_client import api_client

from db.engine import make_engine, session_factory, upgrade
from db.results import query_results
from db.sweeps import list_trials, set_sweep_status
from search_spaces.search import CandidateSpace
from search_spaces.spec import SweepSpec
from service.analysis import pareto_front
from service.schemas import SweepRequest
from service.settings import Settings
from service.submission import store_sweep

TINY: dict[str, Any] = {
    "depths": [[1], [1], [1]],
    "widths": [[0.5], [0.5], [0.5, 0.75, 1]],
    "dataset": "synthetic",
    "n_train": [256],
    "training": {"epochs": 2, "batch_size": 64, "val_size": 128, "n_test": 64, "lr": 0.05,
                 "train_attack": {"steps": 1, "step_size": 0.01}, "eval_attack": {"steps": 2, "step_size": None}},
}
PARETO = [{"metric": "params", "mode": "min"}, {"metric": "robust_acc", "mode": "max"}]


def _store(settings: Settings, spec: dict[str, Any], name: str) -> int:
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with session_factory(engine)() as s:
        sweep, _ = store_sweep(s, SweepRequest(spec=SweepSpec(**spec), name=name), settings)
        return sweep.id


# ------------------------------------------------------------------------------------------------ bad input (HTTP)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "ray_results"))
    with api_client(settings) as c:
        yield c, settings


@pytest.mark.parametrize(
    ("search", "field", "words"),
    [
        ({"algorithm": "tpe", "objectives": PARETO}, "objectives", "got 2 (params, robust_acc)"),
        ({"algorithm": "nsga2", "objectives": PARETO[1:]}, "objectives", "got 1 (robust_acc)"),
        ({"algorithm": "nsga2", "objectives": [*PARETO[:1], {"metric": "accuracy", "mode": "max"}]}, "metric",
         "unknown objective metric 'accuracy'"),
        ({"algorithm": "tpe", "objectives": PARETO[1:], "budget_trials": 0}, "budget_trials", "> 0, got 0"),
        ({"algorithm": "tpe", "objectives": PARETO[1:], "budget_gpu_hours": -1.5}, "budget_gpu_hours", "got -1.5"),
        ({"algorithm": "grid", "budget_trials": 3}, "budget_trials", "a grid runs every configuration"),
        ({"scheduler": "asha", "asha": {"grace_period": 2}}, "grace_period", "2 epochs must be below the trials' 2"),
        ({"scheduler": "asha", "asha": {"reduction_factor": 1}}, "reduction_factor", "> 1, got 1"),
    ],
)
def test_bad_search_is_422_naming_the_field_and_writes_nothing(client, search: dict, field: str, words: str) -> None:
    c, _ = client
    r = c.post("/api/v1/sweeps", json={"spec": TINY | {"search": search}})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert field in detail["loc"] and words in detail["msg"], detail
    assert c.get("/api/v1/sweeps").json() == []


def test_lifecycle_of_unknown_or_running_sweeps(client) -> None:
    c, settings = client
    for action in ("cancel", "resume"):
        r = c.post(f"/api/v1/sweeps/999/{action}")
        assert r.status_code == 404 and r.json()["detail"] == "sweep 999 not found"
    assert c.post("/api/v1/sweeps/999/extend", json={"patch": {"seeds": [1]}}).status_code == 404
    grid = _store(settings, TINY, "grid")
    with session_factory(make_engine(settings.database_url)).begin() as s:
        set_sweep_status(s, sweep_id=grid, status="running", actor="driver")
    r = c.post(f"/api/v1/sweeps/{grid}/extend", json={"patch": {"seeds": [0, 1]}})
    assert r.status_code == 409 and "is running" in r.json()["detail"]
    search = _store(settings, TINY | {"search": {"algorithm": "tpe", "objectives": PARETO[1:]}}, "search")
    r = c.post(f"/api/v1/sweeps/{search}/extend", json={"patch": {"seeds": [0, 1]}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "search"]
    with session_factory(make_engine(settings.database_url))() as s:
        assert len(list_trials(s, sweep_id=grid)) == 3 and list_trials(s, sweep_id=search) == []  # nothing written


# ------------------------------------------------------------------------------------ candidate space and searcher


def test_candidate_space_axes_and_nearest() -> None:
    configs = [{"depths": [1, d], "widths": [w, 1.0], "method": "sat", "lam": None} for d in (3, 1) for w in (2.0, 0.5)]
    space = CandidateSpace(configs[:3])  # (1,3,2.0) (1,3,0.5) (1,1,2.0): the combination (1,1,0.5) is missing
    assert space.axes == {"depths.1": [1, 3], "widths.0": [0.5, 2.0]}
    assert [space.params_of(i) for i in range(3)] == [{"depths.1": 1, "widths.0": 1}, {"depths.1": 1, "widths.0": 0},
                                                      {"depths.1": 0, "widths.0": 1}]
    assert space.index_of({"depths.1": 0, "widths.0": 0}) is None
    assert space.nearest({"depths.1": 0, "widths.0": 0}, exclude=set()) == 1  # ties: the lowest index
    assert space.nearest({"depths.1": 0, "widths.0": 0}, exclude={1}) == 2
    assert space.nearest({"depths.1": 0, "widths.0": 0}, exclude={0, 1, 2}) is None


@pytest.mark.parametrize(("budget", "concurrent", "expected"), [(2, 1, 2), (10, 1, 3), (10, 3, 3)])
def test_searcher_runs_distinct_configurations_within_its_budget(tmp_path: Path, budget: int, concurrent: int,
                                                                   expected: int) -> None:
    """Each suggestion is a new stored trial row; a budget beyond the grid stops at the grid's size (the sampler's
    repeats are answered and resampled, never run), also with several trials in flight."""
    from ray.tune.search import Searcher

    from workers.driver import _candidates
    from workers.tune_search import CandidateSearcher

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "rr"))
    search = {"algorithm": "nsga2", "objectives": PARETO, "budget_trials": budget, "population_size": 2}
    sweep_id = _store(settings, TINY | {"search": search}, "s")
    spec = SweepSpec(**(TINY | {"search": search}))
    candidates = _candidates(spec, cluster_gpus=0, gpu_gib=16.0)
    searcher = CandidateSearcher(spec.search, candidates, database_url=settings.database_url, sweep_id=sweep_id,
                                 data_root=None)
    live: list[tuple[str, dict]] = []
    suggested = []
    for k in range(50):
        cfg = searcher.suggest(f"t{k}")
        if cfg == Searcher.FINISHED:
            break
        suggested.append(cfg["trial"])
        live.append((f"t{k}", cfg["trial"]))
        if len(live) >= concurrent:
            tid, trial = live.pop(0)
            acc = 0.1 + trial["known"]["params"] / 1e6
            searcher.on_trial_complete(tid, result={"kind": "final", "robust_acc": acc, "trial_device_seconds": 1.0,
                                                    **trial["known"]})
    assert len(suggested) == expected
    with session_factory(make_engine(settings.database_url))() as s:
        rows = list_trials(s, sweep_id=sweep_id)
    assert sorted(t.id for t in rows) == sorted(t["trial_id"] for t in suggested)
    assert len({t.config_hash for t in rows}) == expected
    assert {t.config_hash for t in rows} <= {c.row["config_hash"] for c in candidates}
    assert all(t["resources"] == {"CPU": 1} and t["known"]["params"] > 0 for t in suggested)


def test_a_restarted_searcher_adopts_rows_sampled_after_its_snapshot(tmp_path: Path) -> None:
    """A row inserted by the searcher just before the driver died (queued, unknown to the restored searcher) is
    run next instead of a new sample, and still counts against the budget of 2."""
    from ray.tune.search import Searcher

    from workers.driver import _candidates
    from workers.tune_search import CandidateSearcher

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "rr"))
    search = {"algorithm": "tpe", "objectives": PARETO[1:], "budget_trials": 2}
    spec = SweepSpec(**(TINY | {"search": search}))
    sweep_id = _store(settings, TINY | {"search": search}, "r")

    def searcher() -> CandidateSearcher:
        return CandidateSearcher(spec.search, _candidates(spec, cluster_gpus=0, gpu_gib=16.0),
                                 database_url=settings.database_url, sweep_id=sweep_id, data_root=None)

    orphan = searcher().suggest("old")["trial"]["trial_id"]  # sampled, then the driver died
    fresh = searcher()  # restored from an older snapshot: knows nothing
    assert fresh.suggest("t0")["trial"]["trial_id"] == orphan
    fresh.on_trial_complete("t0", result={"kind": "final", "robust_acc": 0.4, "trial_device_seconds": 1.0})
    second = fresh.suggest("t1")["trial"]["trial_id"]
    assert second != orphan and fresh.suggest("t2") == Searcher.FINISHED
    with session_factory(make_engine(settings.database_url))() as s:
        assert sorted(t.id for t in list_trials(s, sweep_id=sweep_id)) == sorted([orphan, second])


def test_searcher_stops_at_its_gpu_hour_budget(tmp_path: Path) -> None:
    """3.6 device-seconds: two trials that took 2 s each exhaust it; a third is never sampled."""
    from ray.tune.search import Searcher

    from workers.driver import _candidates
    from workers.tune_search import CandidateSearcher

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "rr"))
    search = {"algorithm": "tpe", "objectives": PARETO[1:], "budget_gpu_hours": 0.001}
    spec = SweepSpec(**(TINY | {"search": search}))
    sweep_id = _store(settings, TINY | {"search": search}, "g")
    searcher = CandidateSearcher(spec.search, _candidates(spec, cluster_gpus=0, gpu_gib=16.0),
                                 database_url=settings.database_url, sweep_id=sweep_id, data_root=None)
    ran = 0
    while (cfg := searcher.suggest(f"t{ran}")) != Searcher.FINISHED:
        assert cfg is not None
        searcher.on_trial_complete(f"t{ran}", result={"kind": "final", "robust_acc": 0.3,
                                                      "trial_device_seconds": 2.0})
        ran += 1
    assert ran == 2 and searcher.spent_seconds == 4.0


def test_rung_stopper_cuts_below_the_rung_quantile_but_never_the_last_epoch() -> None:
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from workers.tune_search import RungStopper

    sched = RungStopper(epochs=3, grace_period=1, reduction_factor=2)  # rungs at epochs 1 and 2
    a, b, c = (SimpleNamespace(trial_id=i) for i in "abc")
    for t in (a, b, c):
        sched.on_trial_add(None, t)

    def epoch(e: int, acc: float | None) -> dict:
        return {"kind": "epoch", "epoch": e, "robust_acc": acc}

    assert sched.on_trial_result(None, a, epoch(1, 0.5)) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, b, epoch(1, 0.2)) == TrialScheduler.STOP
    assert sched.stop_reason("b") == ("asha: stopped at epoch 1 (the rung at epoch 1; rungs at epochs 1,2): "
                                      "validation robust_acc 0.2000 below the rung cutoff 0.5000, the top 1/2 of "
                                      "the 1 trial recorded there")
    assert sched.on_trial_result(None, a, epoch(2, 0.6)) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, a, epoch(3, 0.0)) == TrialScheduler.CONTINUE  # the last epoch: never cut
    assert sched.on_trial_result(None, c, {"kind": "final", "epoch": 3, "robust_acc": None}) == TrialScheduler.CONTINUE
    assert sched.stop_reason("a") is None


# -------------------------------------------------------------------------------------------- real Ray Tune runs



def _run_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any], name: str) -> tuple[Settings, int]:
    from workers.driver import run

    from search_spaces.run_context import RunContext

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "ray_results"))
    sweep_id = _store(settings, spec, name)
    assert run(sweep_id, RunContext(database_url=settings.database_url, storage_path=settings.storage_path)) == 0
    return settings, sweep_id


def _brute_force_front(rows: list[dict]) -> set[int]:
    return {r["trial"] for r in rows
            if not any(o["params"] <= r["params"] and o["robust_acc"] >= r["robust_acc"]
                       and (o["params"] < r["params"] or o["robust_acc"] > r["robust_acc"]) for o in rows)}


@pytest.mark.ray
def test_nsga2_sweep_runs_its_budget_and_records_the_front(local_ray, tmp_path, monkeypatch) -> None:
    spec = TINY | {"widths": [[0.5], [0.5, 1], [0.5, 0.75, 1]],  # 6 candidates, budget 4
                   "search": {"algorithm": "nsga2", "objectives": PARETO, "budget_trials": 4, "population_size": 2,
                              "max_concurrent": 2, "seed": 3}}
    settings, sweep_id = _run_driver(tmp_path, monkeypatch, spec, "nsga2")
    sessions = session_factory(make_engine(settings.database_url))
    with sessions() as s:
        trials = list_trials(s, sweep_id=sweep_id)
        assert [t.status for t in trials] == ["completed"] * 4, [(t.status, t.error) for t in trials]
        assert len({t.config_hash for t in trials}) == 4 and [t.idx for t in trials] == [0, 1, 2, 3]
        epochs = Counter((e["trial"], e["epoch"]) for e in query_results(s, filters={"sweep": sweep_id}, kind="epoch"))
        assert epochs == {(t.id, e): 1 for t in trials for e in (1, 2)}
        best = [r for r in query_results(s, filters={"sweep": sweep_id, "checkpoint": "best"}, kind="final")]
        assert sorted(r["trial"] for r in best) == sorted(t.id for t in trials)
        _, front = pareto_front(s, metrics=["params", "robust_acc"], maximize=None, filters={"sweep": sweep_id, "attack": "pgd2"})
    assert {r["trial"] for r in front} == _brute_force_front(best) != set()


@pytest.mark.ray
def test_asha_stops_trials_at_rungs_and_says_why(local_ray, tmp_path, monkeypatch) -> None:
    spec = TINY | {"seeds": [0, 1], "training": TINY["training"] | {"epochs": 3},  # 6 configs, rungs at epochs 1, 2
                   "search": {"scheduler": "asha", "asha": {"grace_period": 1, "reduction_factor": 2}}}
    settings, sweep_id = _run_driver(tmp_path, monkeypatch, spec, "asha")
    with session_factory(make_engine(settings.database_url))() as s:
        trials = list_trials(s, sweep_id=sweep_id)
        epochs = {t.id: [m.epoch for m in t.epoch_metrics] for t in trials}
        finals = Counter(r["trial"] for r in query_results(s, filters={"sweep": sweep_id}, kind="final"))
    stopped = [t for t in trials if t.status == "stopped"]
    completed = [t for t in trials if t.status == "completed"]
    assert len(stopped) + len(completed) == 6 and stopped and completed
    for t in stopped:
        assert t.error.startswith("asha: stopped at epoch ") and "below the rung cutoff" in t.error
        rung = int(t.error.removeprefix("asha: stopped at epoch ").split()[0])
        assert rung in (1, 2) and epochs[t.id] == list(range(1, rung + 1)), (t.error, epochs[t.id])
        assert finals[t.id] == 0 and t.device_seconds > 0
    for t in completed:
        assert epochs[t.id] == [1, 2, 3] and finals[t.id] == 2  # best and last, PGD
