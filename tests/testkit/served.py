"""`robustgrid serve` as a user runs it: a subprocess on a free port over a fresh SQLite store (seeded with a
finished sweep, its epochs and final rows, and the published references), tokens made with `robustgrid token
create`, Ray pointed at a closed port (every launch answers its documented 503). For tests that must meet the
service the way its clients do: over HTTP, with a bearer token, nothing injected."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from db.contract import EpochReport, FinalRow
from db.engine import make_engine, session_factory, upgrade
from db.results import upsert_epoch, upsert_final
from db.sweeps import create_sweep, mark_trial

ROBUSTGRID = str(Path(sys.executable).with_name("robustgrid"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT
    env: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)  # scope -> token
    process: subprocess.Popen | None = None

    def headers(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}


def seed_store(database_url: str, *, owner: str = "lab", n_trials: int = 3) -> int:
    """A completed sweep of `owner` with per-epoch rows and best/last pgd20 final rows per trial; its id."""
    engine = make_engine(database_url)
    upgrade(engine)
    trials = [{"config": {"eps": 8 / 255, "i": i}, "config_hash": f"h{i}", "arch": f"wrn-d{i + 1}-1-1-w1-1-1",
               "depths": f"{i + 1}-1-1", "widths": "1-1-1", "params": 1000 * (i + 1), "macs": 10_000 * (i + 1),
               "method": "trades", "lam": 6.0, "eps": 8 / 255, "norm": "linf", "dataset": "cifar10-jpeg",
               "n_train": 64, "seed": 0} for i in range(n_trials)]
    with session_factory(engine).begin() as s:
        sweep = create_sweep(s, name="seeded", spec={}, trials=trials, code_version="test", owner=owner)
        for k, t in enumerate(sweep.trials):
            mark_trial(s, trial_id=t.id, status="running", actor="writer")
            for epoch in (1, 2):
                upsert_epoch(s, trial_id=t.id, report=EpochReport(
                    epoch=epoch, clean_acc=0.3, robust_acc=0.1 * epoch, clean_loss_train=1.0 / epoch,
                    adv_loss_train=1.5 / epoch, natural_risk=1.0 / epoch, robust_reg=0.2, stability=0.6))
            for checkpoint in ("best", "last"):
                upsert_final(s, trial_id=t.id, row=FinalRow(
                    checkpoint=checkpoint, attack="pgd20", epoch=2, clean_acc=0.5 + 0.1 * k, robust_acc=0.3 - 0.05 * k,
                    n_total=100, n_correct=50 + 10 * k, n_robust=30 - 5 * k))
            mark_trial(s, trial_id=t.id, status="completed", actor="writer")
        sweep_id = sweep.id
    engine.dispose()
    return sweep_id


def make_token(env: dict[str, str], *, scope: str, owner: str) -> str:
    out = subprocess.run([ROBUSTGRID, "token", "create", "--owner", owner, "--scope", scope], env=env,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


@contextmanager
def served(tmp: Path, *, extra_env: dict[str, str] | None = None, seed: bool = True) -> Iterator[Served]:
    """`robustgrid serve` on a fresh store in `tmp` with read, write and admin tokens; stopped (SIGTERM) after."""
    port, closed = free_port(), free_port()
    env = {**os.environ, "ROBUSTGRID_DATABASE_URL": f"sqlite:///{tmp / 'rg.db'}",
           "ROBUSTGRID_STORAGE_PATH": str(tmp / "ray"), "ROBUSTGRID_RAY_ADDRESS": f"http://127.0.0.1:{closed}",
           "ROBUSTGRID_API_PORT": str(port), **(extra_env or {})}
    if seed:
        seed_store(env["ROBUSTGRID_DATABASE_URL"])
    service = Served(url=f"http://127.0.0.1:{port}", env=env)
    for scope in ("read", "write", "admin"):
        service.tokens[scope] = make_token(env, scope=scope, owner="lab")
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115 (closed below)
    service.process = subprocess.Popen([ROBUSTGRID, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{service.url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if service.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"robustgrid serve did not start: {(tmp / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield service
    finally:
        service.process.send_signal(signal.SIGINT)
        try:
            service.process.wait(15)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()
        log.close()
