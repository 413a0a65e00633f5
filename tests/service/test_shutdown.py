"""`robustgrid serve` exits within 10 s of SIGTERM while a request is still running: here a submission waiting for
SQLite's write lock (held by the test; the store waits up to 30 s for it), which before kept the process alive until
the wait ended. uvicorn's graceful period cancels the request after SHUTDOWN_GRACE_S and the process leaves the
worker thread behind; the half-done transaction is rolled back, so nothing is stored."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from testkit.api_server import free_port

from db.engine import make_engine, session_factory, upgrade
from service.auth import issue_token

REPO = Path(__file__).resolve().parents[2]
SPEC: dict[str, Any] = {"depths": [[1], [1], [1]], "widths": [[1], [1], [1]], "dataset": "synthetic",
                        "n_train": [64], "training": {"epochs": 1, "batch_size": 32, "val_size": 32, "n_test": 32}}


def _serve(tmp_path: Path) -> tuple[subprocess.Popen, str, str, Path]:
    db = tmp_path / "rg.db"
    url = f"sqlite:///{db}"
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine).begin() as s:
        token = issue_token(s, scope="write", owner="shutdown")[1]
    engine.dispose()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "ROBUSTGRID_DATABASE_URL": url,
           "ROBUSTGRID_STORAGE_PATH": str(tmp_path / "ray"), "ROBUSTGRID_RAY_ADDRESS": f"127.0.0.1:{free_port()}",
           "ROBUSTGRID_PUBLISHED_DIR": str(tmp_path / "none"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/api/v1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base, token, db
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"serve did not start: {proc.communicate()[0].decode()[-2000:]}")


def test_serve_exits_within_10_s_of_sigterm_during_a_blocked_request(tmp_path: Path) -> None:
    proc, base, token, db = _serve(tmp_path)
    lock = sqlite3.connect(db, isolation_level=None)
    answers: list[Any] = []
    try:
        lock.execute("BEGIN EXCLUSIVE")  # every writer now waits for the lock (busy_timeout: 30 s)

        def submit() -> None:
            try:
                answers.append(httpx.post(f"{base}/sweeps", json={"spec": SPEC}, timeout=60,
                                          headers={"Authorization": f"Bearer {token}"}).status_code)
            except httpx.HTTPError as e:
                answers.append(type(e).__name__)

        client = threading.Thread(target=submit)
        client.start()
        time.sleep(2.0)  # the request is inside the route, waiting for the lock
        assert not answers, answers
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            elapsed = time.monotonic() - t0
        assert elapsed < 10.0, elapsed
        client.join(30)
        assert answers and answers[0] != 201, answers  # the client got no sweep
    finally:
        lock.execute("ROLLBACK")
        lock.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM sweeps").fetchone() == (0,)  # nothing half-written
