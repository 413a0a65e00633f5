"""A sweep's life on a real local Ray head through the HTTP API: cancel a running sweep, kill its driver and resume
it, extend a finished sweep with a seed. Tiny synthetic settings; each test well under a minute on two cores."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from testkit.api_server import free_port, running_api
from testkit.faults import wait_until
from typer.testing import CliRunner

from db.engine import make_engine, session_factory
from db.models import EpochMetric, FinalResult, Trial
from db.sweeps import list_trials
from search_spaces.spec import SweepSpec
from service import launcher
from service.cli import app as cli
from service.schemas import SweepRequest
from service.settings import Settings
from service.submission import store_sweep

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]

TINY: dict[str, Any] = {
    "depths": [[1], [1], [1]],
    "widths": [[0.5], [0.5], [0.5]],
    "dataset": "synthetic",
    "n_train": [128],
    "training": {"epochs": 2, "batch_size": 64, "val_size": 64, "n_test": 64, "lr": 0.05,
                 "train_attack": {"steps": 1, "step_size": 0.01}, "eval_attack": {"steps": 1, "step_size": None}},
}


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[str, Settings, launcher.RayCluster]]:
    tmp = Path(tempfile.mkdtemp(prefix="rglc-"))  # short: Ray's unix sockets live under the temp dir
    settings = Settings(database_url=f"sqlite:///{tmp / 'rg.db'}", storage_path=str(tmp / "ray_results"),
                        ray_num_cpus=2, api_port=free_port(), dashboard_port=free_port(), ray_port=free_port(),
                        ray_temp_dir=str(tmp / "ray"))
    try:
        with running_api(settings) as base:
            yield base, settings, launcher.ensure_ray_head(settings)
    finally:
        launcher.stop_local_head(settings)
        shutil.rmtree(tmp, ignore_errors=True)


def sweep_of(client: httpx.Client, base: str, sweep_id: int) -> dict:
    return client.get(f"{base}/sweeps/{sweep_id}").json()


def done(client: httpx.Client, base: str, sweep_id: int) -> Callable[[], dict | None]:
    def check() -> dict | None:
        body = sweep_of(client, base, sweep_id)
        return body if body["status"] in ("completed", "failed", "cancelled") else None
    return check


def rows(settings: Settings, sweep_id: int) -> dict[int, dict[str, Any]]:
    """Per trial: status, timestamps and the ids of its epoch and final rows (a re-run would change them)."""
    with session_factory(make_engine(settings.database_url))() as s:
        out = {}
        for t in list_trials(s, sweep_id=sweep_id):
            epochs = s.execute(select(EpochMetric.epoch, EpochMetric.id).where(EpochMetric.trial_id == t.id)).all()
            finals = s.scalars(select(FinalResult.id).where(FinalResult.trial_id == t.id)).all()
            out[t.id] = {"idx": t.idx, "status": t.status, "error": t.error, "seed": t.seed,
                         "started_at": t.started_at, "ended_at": t.ended_at, "device_seconds": t.device_seconds,
                         "epochs": sorted(e for e, _ in epochs), "epoch_ids": sorted(epochs), "finals": sorted(finals)}
        return out


def test_cancel_stops_the_job_and_the_running_trials(api) -> None:
    base, settings, cluster = api
    spec = TINY | {"widths": [[0.5], [0.5], [0.5, 1]], "training": TINY["training"] | {"epochs": 60}}
    with httpx.Client(timeout=120) as client:
        r = client.post(f"{base}/sweeps", json={"spec": spec, "name": "lc-cancel"})
        assert r.status_code == 201, r.text
        sweep_id, job = r.json()["id"], r.json()["ray_job_id"]
        wait_until(lambda: sweep_of(client, base, sweep_id)["counts"]["running"] >= 1, 60, "a running trial")
        r = client.post(f"{base}/sweeps/{sweep_id}/extend", json={"patch": {"seeds": [0, 1]}})
        assert r.status_code == 409 and "only a finished sweep can be extended" in r.json()["detail"]

        r = client.post(f"{base}/sweeps/{sweep_id}/cancel")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "cancelled" and body["ray_job_id"] == job and body["job_status"] == "STOPPED"
        trials = rows(settings, sweep_id)
        assert sorted(body["trials"]) == sorted(trials)  # both trials were queued or running, none finished
        assert {t["status"] for t in trials.values()} == {"cancelled"}
        assert {t["error"] for t in trials.values()} == {"cancelled by the user"}
        assert launcher.job_status(settings, cluster, job) == "STOPPED"
        detail = sweep_of(client, base, sweep_id)
        assert detail["status"] == "cancelled" and {k: v for k, v in detail["counts"].items() if v} == {"cancelled": 2}
        time.sleep(3)
        assert rows(settings, sweep_id) == trials  # nothing runs or writes any more
        r = client.post(f"{base}/sweeps/{sweep_id}/cancel")
        assert r.status_code == 409 and "already cancelled" in r.json()["detail"]


def test_killed_driver_resumes_and_each_trial_completes_once(api) -> None:
    """Trial A (small) completes, trial B (8x the data) is mid-way: SIGKILL the driver, resume over HTTP; A is never
    run again (its rows and end time unchanged), B continues, every (trial, epoch) row exists once."""
    base, settings, cluster = api
    spec = TINY | {"widths": [[0.5], [0.5], [0.5, 1]], "n_train": [128, 1024], "zip": [["widths", "n_train"]],
                   "training": TINY["training"] | {"epochs": 3}}
    with session_factory(make_engine(settings.database_url))() as s:
        sweep_id = store_sweep(s, SweepRequest(spec=SweepSpec(**spec), name="lc-kill"), settings)[0].id
    from search_spaces.run_context import RunContext

    context = RunContext(database_url=settings.database_url, storage_path=settings.storage_path).write(
        Path(settings.storage_path).parent / "context.json")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_ADDRESS": cluster.gcs_address}  # Ray's own variable
    log = Path(settings.storage_path).parent / "driver.log"
    with open(log, "w") as out:
        driver = subprocess.Popen([sys.executable, "-m", "workers.driver", str(sweep_id), "--context", str(context)],
                                  cwd=REPO, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def mid_way() -> dict | None:
        got = rows(settings, sweep_id)
        a, b = sorted(got.values(), key=lambda t: t["idx"])
        assert driver.poll() is None, log.read_text()[-3000:]
        return got if a["status"] == "completed" and b["status"] == "running" and b["epochs"] else None

    before = wait_until(mid_way, 90, "trial A completed and trial B mid-way", poll_s=0.1)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(10)
    a_id, b_id = sorted(before, key=lambda i: before[i]["idx"])
    assert before[b_id]["epochs"] and before[b_id]["epochs"][-1] < 3 and not before[b_id]["finals"]

    with httpx.Client(timeout=120) as client:
        r = client.post(f"{base}/sweeps/{sweep_id}/resume")
        assert r.status_code == 200, r.text
        assert r.json()["trials"] == [b_id] and r.json()["ray_job_id"]
        assert wait_until(done(client, base, sweep_id), 120, "the resumed sweep")["status"] == "completed"
        assert "restoring experiment" in launcher.job_logs(settings, cluster, r.json()["ray_job_id"])  # Tuner.restore
        assert client.post(f"{base}/sweeps/{sweep_id}/resume").status_code == 409  # nothing left

    after = rows(settings, sweep_id)
    assert {t["status"] for t in after.values()} == {"completed"}
    assert after[a_id] == before[a_id]  # never run again: same rows, same end time, same GPU-seconds
    assert after[b_id]["started_at"] == before[b_id]["started_at"]
    assert after[b_id]["epochs"] == [1, 2, 3] and len(after[b_id]["finals"]) == 2
    for e, row_id in before[b_id]["epoch_ids"]:  # upserted, never duplicated
        assert (e, row_id) in after[b_id]["epoch_ids"]
    with session_factory(make_engine(settings.database_url))() as s:
        pairs = s.execute(select(EpochMetric.trial_id, EpochMetric.epoch).join(Trial)
                          .where(Trial.sweep_id == sweep_id)).all()
    assert Counter(pairs) == {(t, e): 1 for t in (a_id, b_id) for e in (1, 2, 3)}


def test_extend_with_a_seed_runs_only_the_new_trial(api) -> None:
    base, settings, _ = api
    with httpx.Client(timeout=120) as client:
        r = client.post(f"{base}/sweeps", json={"spec": TINY, "name": "lc-extend"})
        assert r.status_code == 201, r.text
        sweep_id = r.json()["id"]
        assert wait_until(done(client, base, sweep_id), 90, "the first launch")["status"] == "completed"
        before = rows(settings, sweep_id)

        bad = client.post(f"{base}/sweeps/{sweep_id}/extend", json={"patch": {"seeds": [0, 1], "colour": "red"}})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "patch", "colour"]
        r = client.post(f"{base}/sweeps/{sweep_id}/extend", json={"patch": {"seeds": [0, 1]}})
        assert r.status_code == 201, r.text
        new_ids = r.json()["trials"]
        assert len(new_ids) == 1 and new_ids[0] not in before
        assert wait_until(done(client, base, sweep_id), 90, "the extension")["status"] == "completed"
        again = client.post(f"{base}/sweeps/{sweep_id}/extend", json={"patch": {"seeds": [0, 1]}})
        assert again.status_code == 422 and "adds no configuration" in again.json()["detail"][0]["msg"]
        spec = sweep_of(client, base, sweep_id)["spec"]

    after = rows(settings, sweep_id)
    (old_id,) = before
    assert after[old_id] == before[old_id]  # the existing trial did not run again
    new = after[new_ids[0]]
    assert (new["idx"], new["seed"], new["status"], new["epochs"], len(new["finals"])) == (1, 1, "completed", [1, 2], 2), \
        new["error"]
    assert spec["spec"]["seeds"] == [0, 1]  # the stored layout: search_spaces.stored.StoredSweep
    assert spec["extensions"] == [{"first_idx": 1, "n_trials": 1, "patch": {"seeds": [0, 1]}}]
    assert (Path(settings.storage_path) / f"sweep-{sweep_id}-lc-extend-ext1").is_dir()  # its own Tune experiment

    runner = CliRunner()  # the CLI takes the same path: a finished sweep has nothing to cancel or resume
    for command in ("cancel", "resume"):
        res = runner.invoke(cli, [command, "lc-extend", "--database-url", settings.database_url])
        assert res.exit_code == 2 and "nothing to" in res.output, res.output
