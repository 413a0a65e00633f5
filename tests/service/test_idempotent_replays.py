"""Concurrent replays of one `Idempotency-Key` against a served API (uvicorn in a thread, real HTTP): exactly one
launch attempt (the launch is claimed in the database: service.launch_claim), every other request answers the
stored sweep; a failed launch leaves no trial queued. On SQLite and PostgreSQL. The launcher is replaced by one that
counts its calls and either fails like a Ray head that is down or submits after a delay."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import URL
from testkit.api_server import free_port, running_api

from db.engine import make_engine, session_factory
from db.sweeps import claim_launch, get_sweep, list_sweeps, list_trials
from service import launch_claim, launcher
from service.schemas import SweepRequest
from service.settings import Settings
from service.submission import store_sweep

N_THREADS = 16
SPEC: dict[str, Any] = {
    "depths": [[1], [1], [1]], "widths": [[0.5], [0.5], [0.5, 1]], "dataset": "synthetic", "n_train": [128],
    "training": {"epochs": 1, "batch_size": 64, "val_size": 64, "n_test": 64},
}
TOKEN_OWNER = "tests"  # the owner of running_api's default token (testkit.api_client.new_token)
LAUNCH_S = 0.5  # how long the fake launch takes: long enough for every replay to arrive while it runs


class FakeLauncher:
    """Counts the sweeps it is asked to submit; each submission takes LAUNCH_S, then fails like a Ray head that is
    down, or with `ok` returns a job id."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.ok = False

    def submit(self, settings: Settings, cluster: Any, *, sweep_id: int, data_root: str | None) -> str:
        self.calls.append(sweep_id)
        time.sleep(LAUNCH_S)
        if self.ok:
            return f"raysubmit_{len(self.calls)}"
        raise ConnectionError("Failed to connect to Ray at address: http://127.0.0.1:9.")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeLauncher:
    fake = FakeLauncher()
    cluster = launcher.RayCluster(address="http://127.0.0.1:9", gcs_address="", dashboard_url="http://127.0.0.1:9",
                                  started_by_us=False)
    monkeypatch.setattr(launcher, "ensure_ray_head", lambda settings: cluster)
    monkeypatch.setattr(launcher, "submit_sweep_job", fake.submit)
    return fake


def _settings(tmp_path: Path, db_url: str | URL) -> Settings:
    url = db_url if isinstance(db_url, str) else db_url.render_as_string(hide_password=False)
    return Settings(database_url=url, storage_path=str(tmp_path / "ray"), api_port=free_port(), published_dir=None)


def _post_together(base: str, n: int = N_THREADS) -> list[httpx.Response]:
    barrier, out = threading.Barrier(n), [None] * n

    def post(i: int) -> None:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            out[i] = client.post(f"{base}/sweeps", json={"spec": SPEC, "name": "once"},
                                 headers={"Idempotency-Key": "same-key"})

    threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None for r in out)
    return out  # type: ignore[return-value]


def test_concurrent_replays_launch_once_and_answer_the_stored_sweep(tmp_path: Path, db_url, fake: FakeLauncher) -> None:
    settings = _settings(tmp_path, db_url)
    with running_api(settings, scope="write") as base:
        answers = _post_together(base)
    codes = Counter(r.status_code for r in answers)
    assert codes == {503: 1, 201: N_THREADS - 1}, [(r.status_code, r.text[:200]) for r in answers]
    assert len(fake.calls) == 1
    (failed,) = [r for r in answers if r.status_code == 503]
    assert "could not be launched" in failed.json()["detail"] and "Failed to connect to Ray" in failed.json()["detail"]
    replays = [r.json() for r in answers if r.status_code == 201]
    assert {(b["id"], b["name"], b["status"]) for b in replays} == {(fake.calls[0], "once", "failed")}
    assert all(r.headers["Idempotent-Replayed"] == "true" for r in answers if r.status_code == 201)
    assert all(b["counts"]["cancelled"] == 2 and b["counts"]["queued"] == 0 for b in replays)
    with session_factory(make_engine(settings.database_url))() as s:
        (sweep,) = list_sweeps(s)
        assert sweep.status == "failed" and "could not be launched" in (sweep.error or "")
        assert sweep.launch_claim is None and sweep.launch_lease_until is None  # released
        trials = list_trials(s, sweep_id=sweep.id)
        assert [(t.status, t.error) for t in trials] == [("cancelled", sweep.error)] * 2  # none left queued


def test_concurrent_replays_of_a_launch_that_succeeds(tmp_path: Path, db_url, fake: FakeLauncher) -> None:
    fake.ok = True
    settings = _settings(tmp_path, db_url)
    with running_api(settings, scope="write") as base:
        answers = _post_together(base)
    assert Counter(r.status_code for r in answers) == {201: N_THREADS}, [r.text[:200] for r in answers]
    assert len(fake.calls) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == N_THREADS - 1
    with session_factory(make_engine(settings.database_url))() as s:
        (sweep,) = list_sweeps(s)
        assert (sweep.status, sweep.ray_job_id) == ("queued", "raysubmit_1")
        assert {t.status for t in list_trials(s, sweep_id=sweep.id)} == {"queued"}  # the driver runs them


def test_a_claim_whose_request_died_lapses_and_a_retry_launches(tmp_path: Path, db_url, fake: FakeLauncher,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The API died between storing the sweep (and claiming its launch) and launching: the claim is not renewed,
    lapses after LAUNCH_LEASE_S, and the retry waits for that, then launches once."""
    monkeypatch.setattr(launch_claim, "LAUNCH_LEASE_S", 1.0)
    settings = _settings(tmp_path, db_url)
    with running_api(settings, scope="write") as base:
        sessions = session_factory(make_engine(settings.database_url))
        with sessions() as s:  # store the sweep as the first POST would, then claim it as a request that dies
            sweep, _ = store_sweep(s, SweepRequest.model_validate({"spec": SPEC, "name": "once"}), settings,
                                   owner=TOKEN_OWNER, idempotency_key="same-key")
            sweep_id = sweep.id
        with sessions.begin() as s:
            assert claim_launch(s, sweep_id=sweep_id, claim="dead", lease_s=1.0)
        t0 = time.monotonic()
        r = httpx.post(f"{base}/sweeps", json={"spec": SPEC, "name": "once"}, headers={"Idempotency-Key": "same-key"},
                       timeout=60)
        waited = time.monotonic() - t0
    assert r.status_code == 503 and "could not be launched" in r.json()["detail"], r.text
    assert fake.calls == [sweep_id] and 0.5 <= waited < 5, waited
    with sessions() as s:
        assert get_sweep(s, sweep_id=sweep_id).status == "failed"


def test_a_claim_of_a_process_that_died_on_this_host_is_taken_over_at_once(tmp_path: Path, db_url,
                                                                         fake: FakeLauncher) -> None:
    """An API killed mid-launch and restarted: its claim names a pid that no longer exists, so the retry launches
    without waiting for the lease (a minute here) to lapse."""
    settings = _settings(tmp_path, db_url)
    with running_api(settings, scope="write") as base:
        sessions = session_factory(make_engine(settings.database_url))
        with sessions() as s:
            sweep, _ = store_sweep(s, SweepRequest.model_validate({"spec": SPEC, "name": "once"}), settings,
                                   owner=TOKEN_OWNER, idempotency_key="same-key")
            sweep_id = sweep.id
        claim = f"{socket.gethostname()[:30]}:{_dead_pid()}:0123456789abcdef"
        assert launch_claim.is_dead(claim) and not launch_claim.is_dead(launch_claim.new_claim())
        with sessions.begin() as s:
            assert claim_launch(s, sweep_id=sweep_id, claim=claim, lease_s=60.0)
        t0 = time.monotonic()
        r = httpx.post(f"{base}/sweeps", json={"spec": SPEC, "name": "once"}, headers={"Idempotency-Key": "same-key"},
                       timeout=60)
        waited = time.monotonic() - t0
    assert r.status_code == 503 and "could not be launched" in r.json()["detail"], r.text
    assert fake.calls == [sweep_id] and waited < 5, waited


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
