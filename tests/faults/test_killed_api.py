"""Issue 12, fault 4: SIGKILL the API process (uvicorn, a subprocess) at random points during 50 submissions and
restart it. Every sweep is complete with all its trials or absent; the client retries each POST with the same
`Idempotency-Key` until it gets an answer, and the retry returns the sweep the first attempt stored (never a
second one). Ray is a closed port, so every launch fails fast: the sweeps end `failed` with the reason."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from testkit.api_client import api_client
from testkit.api_server import free_port

from db.engine import make_engine, session_factory, upgrade
from db.models import Sweep, Trial
from service.auth import issue_token
from service.settings import Settings

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[2]
N_SUBMISSIONS = 50
SPEC: dict[str, Any] = {
    "depths": [[1], [1], [1]], "widths": [[0.5], [0.5], [0.5, 1]], "dataset": "synthetic", "n_train": [128],
    "training": {"epochs": 1, "batch_size": 64, "val_size": 64, "n_test": 64},
}


def test_a_retried_post_with_the_same_key_returns_the_original_sweep(tmp_path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "ray"),
                        ray_address=f"127.0.0.1:{free_port()}", dashboard_port=free_port())
    with api_client(settings) as client:
        first = client.post("/api/v1/sweeps", json={"spec": SPEC, "name": "idem"}, headers={"Idempotency-Key": "k1"})
        assert first.status_code == 503 and "could not be launched" in first.json()["detail"]
        again = client.post("/api/v1/sweeps", json={"spec": SPEC, "name": "idem"}, headers={"Idempotency-Key": "k1"})
        assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
        body = again.json()
        assert body["name"] == "idem" and body["status"] == "failed" and body["n_trials"] == 2
        assert "could not be launched" in body["error"]
        other = client.post("/api/v1/sweeps", json={"spec": SPEC, "name": "idem"}, headers={"Idempotency-Key": "k2"})
        assert other.status_code == 409 and "is taken" in other.json()["detail"]  # a new key: a new sweep
        assert len(client.get("/api/v1/sweeps").json()) == 1


class Server:
    """`uvicorn service.app:create_app --factory` as a subprocess on the settings' environment; kill() SIGKILLs it,
    start() starts it again and waits for /health."""

    def __init__(self, env: dict[str, str], port: int, log: Path):
        self.env, self.port, self.log, self.proc = env, port, log, None
        self.base = f"http://127.0.0.1:{port}/api/v1"

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "warning"], cwd=REPO, env=self.env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"the API did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, str, str]]:
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine).begin() as s:
        token = issue_token(s, scope="write", owner="faults")[1]
    engine.dispose()
    env = {**os.environ, "ROBUSTGRID_DATABASE_URL": url, "ROBUSTGRID_STORAGE_PATH": str(tmp_path / "ray"),
           "ROBUSTGRID_RAY_ADDRESS": f"127.0.0.1:{free_port()}", "ROBUSTGRID_DASHBOARD_PORT": str(free_port()),
           "OMP_NUM_THREADS": "1"}
    srv = Server(env, free_port(), tmp_path / "api.log")
    srv.start()
    try:
        yield srv, url, token
    finally:
        srv.kill()


def test_killing_the_api_during_50_submissions_loses_or_splits_nothing(server) -> None:
    srv, url, token = server
    rng = random.Random(12)
    done, kills = threading.Event(), []

    def killer() -> None:  # SIGKILL at random points (mid-request or idle), then restart
        while not done.wait(rng.uniform(0.05, 0.8)):
            srv.kill()
            kills.append(time.monotonic())
            srv.start()

    answers: dict[int, list[int]] = {}  # submission -> status codes of its attempts
    ids: dict[int, int] = {}
    thread = threading.Thread(target=killer, daemon=True)
    t0 = time.monotonic()
    thread.start()
    try:
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
            for i in range(N_SUBMISSIONS):
                attempts = answers.setdefault(i, [])
                while True:  # a client that retries with the same key until the sweep is answered for
                    try:
                        r = client.post(f"{srv.base}/sweeps", json={"spec": SPEC, "name": f"k{i}"},
                                        headers={"Idempotency-Key": f"key-{i}"})
                    except httpx.TransportError:
                        attempts.append(0)  # the API died under the request
                        time.sleep(0.2)
                        continue
                    attempts.append(r.status_code)
                    if r.status_code == 201:
                        ids[i] = r.json()["id"]
                        break
                    assert r.status_code == 503, r.text  # Ray is unreachable: stored, failed; ask again
    finally:
        done.set()
        thread.join(120)
    seconds = time.monotonic() - t0
    engine = make_engine(url)
    with session_factory(engine)() as s:
        sweeps = s.scalars(select(Sweep)).all()
        trials = dict(s.execute(select(Trial.sweep_id, func.count()).group_by(Trial.sweep_id)).all())
    engine.dispose()
    assert sorted(sw.name for sw in sweeps) == sorted(f"k{i}" for i in range(N_SUBMISSIONS))  # each once
    for sw in sweeps:
        assert trials.get(sw.id) == sw.n_trials == 2, sw.name  # complete, with all its trials
        assert sw.idempotency_key == f"key-{sw.name[1:]}" and ids[int(sw.name[1:])] == sw.id
        assert sw.status == "failed" and "could not be launched" in sw.error  # launched (and failed), none left
    interrupted = sum(a.count(0) for a in answers.values())
    assert len(kills) >= 5 and interrupted >= 1, (len(kills), interrupted)
    print(f"{N_SUBMISSIONS} submissions in {seconds:.1f} s: {len(kills)} kills, {interrupted} requests cut off, "
          f"{sum(len(a) for a in answers.values())} attempts")
