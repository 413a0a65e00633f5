"""Issue 12, item 1: a sweep submitted through the API runs on a real two-host Ray cluster (two network namespaces
on one machine: testkit.netns_cluster), with token auth on, checkpoints in a storage path both hosts see, and
every result in PostgreSQL. Each trial records the node (host and IP) it ran on."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from testkit.api_client import api_client
from testkit.faults import trial_rows, wait_until
from testkit.netns_cluster import DASHBOARD_PORT, GCS_PORT, NetnsCluster, cluster_or_skip

from db.engine import make_engine, session_factory
from db.models import EpochMetric, Sweep, Trial
from service.settings import Settings

pytestmark = pytest.mark.cluster
PG_URL = os.environ.get("ROBUSTGRID_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SPEC: dict[str, Any] = {
    "depths": [[1], [1], [1]], "widths": [[0.5], [0.5], [0.5, 1]], "dataset": "synthetic", "n_train": [256],
    "training": {"epochs": 3, "batch_size": 64, "val_size": 64, "n_test": 64, "lr": 0.05,
                 "train_attack": {"steps": 1, "step_size": 0.01}, "eval_attack": {"steps": 1, "step_size": None}},
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[NetnsCluster, str]]:
    with cluster_or_skip(PG_URL, subnet=11) as got:
        yield got


def cluster_settings(cluster: NetnsCluster, db_url: str) -> Settings:
    return Settings(database_url=db_url, storage_path=cluster.storage_path, ray_address=f"{cluster.head_ip}:{GCS_PORT}",
                    dashboard_port=DASHBOARD_PORT)


def sweep_status(db_url: str, sweep_id: int) -> str:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            return s.get(Sweep, sweep_id).status
    finally:
        engine.dispose()


def test_a_sweep_runs_on_both_nodes_and_lands_in_postgres(cluster, monkeypatch) -> None:
    c, db_url = cluster
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(c.token_path))  # the launcher sends the cluster's token
    settings = cluster_settings(c, db_url)
    t0 = time.monotonic()
    with api_client(settings) as client:
        r = client.post("/api/v1/sweeps", json={"spec": SPEC, "name": "two-nodes"})
        assert r.status_code == 201, r.text
        sweep_id = r.json()["id"]
        status = wait_until(lambda: (s := sweep_status(db_url, sweep_id)) in ("completed", "failed") and s, 240,
                            "the sweep to end", poll_s=1)
        trials = client.get(f"/api/v1/sweeps/{sweep_id}/trials").json()
    seconds = time.monotonic() - t0
    assert status == "completed", trials
    rows = trial_rows(db_url, sweep_id)
    assert {t["status"] for t in rows.values()} == {"completed"} and len(rows) == 2
    ips = sorted(t["node"].split()[-1] for t in rows.values())
    assert ips == [c.head_ip, c.worker_ip]  # one trial on each host
    assert sorted(t["node"] for t in trials) == sorted(t["node"] for t in rows.values())  # shown by the API
    for t in rows.values():
        assert t["epochs"] == [1, 2, 3] and t["finals"] == 2 and t["dup_epochs"] == 0
    engine = make_engine(db_url)
    with session_factory(engine)() as s:  # every result is in PostgreSQL
        assert engine.dialect.name == "postgresql"
        pairs = s.execute(select(EpochMetric.trial_id, EpochMetric.epoch).join(Trial)
                          .where(Trial.sweep_id == sweep_id)).all()
    engine.dispose()
    assert Counter(pairs) == {(tid, e): 1 for tid in rows for e in (1, 2, 3)}
    checkpoints = list((c.tmp / "ray_results").rglob("state.pt"))
    assert len(checkpoints) == 2  # one kept per trial, in the storage both hosts see
    print(f"two-node sweep: {seconds:.1f} s, nodes {ips}")
