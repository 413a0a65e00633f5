"""Issue 12, fault 2: SIGKILL the worker node (its `ray start` process tree, in its namespace) mid-sweep on the
two-host cluster (testkit.netns_cluster). Its trial finishes on the head from its checkpoint (Tune's result log
never restarts at epoch 1), the sweep completes, and no row is duplicated."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testkit.faults import trial_rows, wait_until
from testkit.netns_cluster import DASHBOARD_PORT, GCS_PORT, NetnsCluster, cluster_or_skip

from db.engine import make_engine, session_factory, upgrade
from db.models import Sweep
from search_spaces.spec import SweepSpec
from service.schemas import SweepRequest
from service.settings import Settings
from service.submission import launch_sweep, store_sweep

pytestmark = [pytest.mark.faults, pytest.mark.cluster]
PG_URL = os.environ.get("ROBUSTGRID_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
EPOCHS = 10
SPEC: dict[str, Any] = {
    "depths": [[1], [1], [1]], "widths": [[0.5], [0.5], [0.5, 1]], "dataset": "synthetic", "n_train": [1024],
    "training": {"epochs": EPOCHS, "batch_size": 64, "val_size": 64, "n_test": 64, "lr": 0.05,
                 "train_attack": {"steps": 1, "step_size": 0.01}, "eval_attack": {"steps": 1, "step_size": None}},
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[NetnsCluster, str]]:
    with cluster_or_skip(PG_URL, subnet=12) as got:
        yield got


def tune_epochs(storage: Path, trial_id: int) -> list[int]:
    """The epochs Tune logged for the trial, in order, across its restarts (its result.json in the storage)."""
    (path,) = storage.glob(f"sweep-*/trial-{trial_id}/result.json")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["epoch"] for r in rows if r.get("kind") == "epoch"]


def test_a_killed_worker_node_s_trial_finishes_on_the_head(cluster, monkeypatch) -> None:
    c, db_url = cluster
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(c.token_path))
    settings = Settings(database_url=db_url, storage_path=c.storage_path, ray_address=f"{c.head_ip}:{GCS_PORT}",
                        dashboard_port=DASHBOARD_PORT)
    upgrade(db_url)
    sessions = session_factory(make_engine(db_url))
    with sessions() as s:  # store_sweep commits the sweep and its trials itself
        sweep_id = store_sweep(s, SweepRequest(spec=SweepSpec(**SPEC), name="node-kill"), settings)[0].id
    t0 = time.monotonic()
    launch_sweep(sessions, sweep_id, settings, data_root=None)

    def worker_trial_mid_way() -> int | None:  # the trial on the worker node, 2 epochs in, far from done
        got = trial_rows(db_url, sweep_id)
        with sessions() as s:
            assert s.get(Sweep, sweep_id).status in ("queued", "running"), got
        on_worker = [tid for tid, t in got.items() if t["node"] and t["node"].split()[-1] == c.worker_ip]
        return next((tid for tid in on_worker if 2 <= len(got[tid]["epochs"]) <= EPOCHS - 4), None)

    moved = wait_until(worker_trial_mid_way, 180, "the worker node's trial past epoch 2", poll_s=0.5)
    c.kill_worker_node()
    at_kill = {tid: len(t["epochs"]) for tid, t in trial_rows(db_url, sweep_id).items()}
    killed_at = time.monotonic() - t0

    def ended() -> str | None:
        with sessions() as s:
            status = s.get(Sweep, sweep_id).status
        return status if status in ("completed", "failed") else None

    status = wait_until(ended, 300, "the sweep to end", poll_s=1)
    seconds = time.monotonic() - t0
    rows = trial_rows(db_url, sweep_id)
    assert status == "completed", rows
    assert {t["status"] for t in rows.values()} == {"completed"}
    assert {t["node"].split()[-1] for t in rows.values()} == {c.head_ip}  # both ended on the head
    assert {tid for tid, t in rows.items() if t["retries"] >= 1} == {moved}, rows  # restarted: the moved one
    for t in rows.values():
        assert t["epochs"] == list(range(1, EPOCHS + 1)) and t["dup_epochs"] == 0 and t["finals"] == 2
    logged = tune_epochs(Path(c.storage_path), moved)
    assert logged.count(1) == 1 and logged[-1] == EPOCHS  # resumed from a checkpoint, never from epoch 1
    assert logged[:at_kill[moved]] == list(range(1, at_kill[moved] + 1))
    print(f"node killed at {killed_at:.1f} s after {at_kill[moved]} epochs of its trial; sweep completed in "
          f"{seconds:.1f} s; epochs Tune logged for it: {logged}")
