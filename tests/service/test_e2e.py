"""End to end: HTTP API -> Ray job -> Tune trials on a real local Ray runtime -> SQL store -> Pareto front."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from testkit.api_server import free_port, running_api

from service import launcher
from service.settings import Settings

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Settings]]:
    tmp = tmp_path_factory.mktemp("e2e")
    settings = Settings(database_url=f"sqlite:///{tmp / 'rg.db'}", storage_path=str(tmp / "ray_results"),
                        ray_num_cpus=2, api_port=free_port(), dashboard_port=free_port())
    try:
        with running_api(settings) as base:
            yield base, settings
    finally:
        launcher.stop_local_head(settings)


TINY = {
    "depths": [[1], [1], [1]],
    "widths": [[1], [1], [1, 2]],
    "dataset": "synthetic",
    "n_train": [256],
    "training": {"epochs": 2, "batch_size": 64, "val_size": 128, "n_test": 128, "lr": 0.05,
                 "train_attack": {"steps": 2, "step_size": 0.01}, "eval_attack": {"steps": 3, "step_size": None}},
}


def wait_done(client: httpx.Client, base: str, sweep_id: int, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get(f"{base}/sweeps/{sweep_id}").json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        time.sleep(1)
    raise AssertionError(f"sweep {sweep_id} did not finish: {body}")


def brute_force_front(rows: list[dict]) -> set[int]:
    """Trials whose (params, robust_acc) no other row beats: params lower-or-equal and accuracy higher-or-equal,
    one strictly."""
    keep = set()
    for r in rows:
        dominated = any(o["params"] <= r["params"] and o["robust_acc"] >= r["robust_acc"]
                        and (o["params"] < r["params"] or o["robust_acc"] > r["robust_acc"]) for o in rows)
        if not dominated:
            keep.add(r["trial"])
    return keep


def test_two_trial_sweep_over_http(api: tuple[str, Settings]) -> None:
    base, settings = api
    with httpx.Client(timeout=120) as client:
        r = client.post(f"{base}/sweeps", json={"spec": TINY, "name": "e2e-two"})
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["n_trials"] == 2 and created["totals"]["n_trials"] == 2
        assert created["dashboard_url"].startswith("http://")
        done = wait_done(client, base, created["id"])
        assert done["status"] == "completed", done
        assert {k: v for k, v in done["counts"].items() if v} == {"completed": 2}

        trials = client.get(f"{base}/sweeps/{created['id']}/trials").json()
        assert {t["arch"] for t in trials} == {"wrn-d1-1-1-w1-1-1", "wrn-d1-1-1-w1-1-2"}
        assert all(t["status"] == "completed" and t["device_seconds"] > 0 for t in trials)

        epochs = client.get(f"{base}/results", params={"sweep": "e2e-two", "kind": "epoch"}).json()
        assert Counter((e["trial"], e["epoch"]) for e in epochs) == {(t["id"], ep): 1 for t in trials for ep in (1, 2)}
        for e in epochs:
            assert all(0.0 <= e[k] <= 1.0 for k in ("clean_acc", "robust_acc", "stability"))
            assert e["adv_loss_train"] > 0 and e["local_lipschitz"] > 0 and e["checkpoint"] is None

        final = client.get(f"{base}/results", params={"sweep": created["id"]}).json()
        assert sorted((f["trial"], f["checkpoint"], f["attack"]) for f in final) == sorted(
            (t["id"], c, "pgd3") for t in trials for c in ("best", "last"))
        for f in final:
            assert f["dataset"] == "synthetic" and f["eps"] == pytest.approx(8 / 255)
            assert 0.0 <= f["robust_acc"] <= f["clean_acc"] <= 1.0
            assert f["robust_acc"] <= f["stability"] + 1e-9  # robust examples are correct AND stable

        csv = client.get(f"{base}/results", params={"sweep": created["id"], "format": "csv"}).text
        assert csv.splitlines()[0].startswith("sweep,trial,arch,depths,widths,params,macs")
        assert len(csv.strip().splitlines()) == 1 + len(final)

        front = client.get(f"{base}/pareto", params={"x": "params", "y": "robust_acc", "sweep": created["id"], "attack": "pgd3"}).json()
        best = [f for f in final if f["checkpoint"] == "best"]
        assert {p["trial"] for p in front["front"]} == brute_force_front(best)
        assert front["maximize"] == [False, True]


def test_failing_trial_does_not_stop_the_sweep(api: tuple[str, Settings]) -> None:
    base, _ = api
    spec = TINY | {"widths": [[1], [1], [1, 2, 3]], "n_train": [256, 256, 100000], "zip": [["widths", "n_train"]]}
    with httpx.Client(timeout=120) as client:
        r = client.post(f"{base}/sweeps", json={"spec": spec, "name": "e2e-failing"})
        assert r.status_code == 201, r.text
        done = wait_done(client, base, r.json()["id"])
        assert done["status"] == "completed"
        assert {k: v for k, v in done["counts"].items() if v} == {"completed": 2, "failed": 1}
        trials = client.get(f"{base}/sweeps/{done['id']}/trials").json()
        failed = [t for t in trials if t["status"] == "failed"]
        assert failed[0]["n_train"] == 100000 and "n_train" in failed[0]["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"preset": "nope"}, "preset"),
        ({"spec": {"eps": [2.0]}}, "eps"),
        ({"spec": {"widths": [[-1], [10], [10]]}}, "widths"),
        ({"spec": {"depths": [[], [5], [5]]}}, "depths"),
        ({"spec": {"dataset": "imagenet"}}, "dataset"),
        ({"spec": {"depths": [[0], [0], [0]]}}, "depths"),
        ({"spec": {"dataset": "cifar10"}, "data_root": "/does/not/exist"}, "data_root"),
    ],
)
def test_bad_input_is_422_and_writes_nothing(api: tuple[str, Settings], body: dict, field: str) -> None:
    base, _ = api
    with httpx.Client(timeout=60) as client:
        before = len(client.get(f"{base}/sweeps").json())
        r = client.post(f"{base}/sweeps", json=body)
        assert r.status_code == 422, r.text
        assert field in str(r.json()["detail"])
        assert len(client.get(f"{base}/sweeps").json()) == before
