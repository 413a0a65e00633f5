"""Issue 12, fault 3: SIGKILL the sweep's driver mid-sweep, then start it again (`resume`: the service's restart of
a dead driver, on the same local Ray head). Finished trials are not re-run (their rows and end times unchanged),
the unfinished ones continue, completed = requested, every (trial, epoch) row once. tests/service/test_lifecycle.py
does the same through HTTP with two trials; here four trials on two CPUs, killed once one has completed and another
is mid-way."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testkit.api_server import free_port
from testkit.faults import trial_rows, wait_until

from db.engine import make_engine, session_factory, upgrade
from db.models import Sweep
from search_spaces.run_context import RunContext
from search_spaces.spec import SweepSpec
from service import launcher
from service.schemas import SweepRequest
from service.settings import Settings
from service.submission import resume_sweep, store_sweep

pytestmark = [pytest.mark.faults, pytest.mark.ray]
REPO = Path(__file__).resolve().parents[2]
SPEC: dict[str, Any] = {  # 4 trials: 2 widths x n_train 128 (done first) and 1024 (eight times the work)
    "depths": [[1], [1], [1]], "widths": [[0.5], [0.5], [0.5, 1]], "dataset": "synthetic", "n_train": [128, 1024],
    "training": {"epochs": 4, "batch_size": 64, "val_size": 64, "n_test": 64, "lr": 0.05,
                 "train_attack": {"steps": 1, "step_size": 0.01}, "eval_attack": {"steps": 1, "step_size": None}},
}


@pytest.fixture(scope="module")
def head() -> Iterator[tuple[Settings, launcher.RayCluster]]:
    tmp = Path(tempfile.mkdtemp(prefix="rgkd-"))
    settings = Settings(database_url=f"sqlite:///{tmp / 'rg.db'}", storage_path=str(tmp / "ray_results"),
                        ray_num_cpus=2, dashboard_port=free_port(), ray_port=free_port(), ray_temp_dir=str(tmp / "ray"))
    try:
        yield settings, launcher.ensure_ray_head(settings)
    finally:
        launcher.stop_local_head(settings)
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_killed_driver_restarts_without_re_running_finished_trials(head) -> None:
    settings, cluster = head
    upgrade(settings.database_url)
    sessions = session_factory(make_engine(settings.database_url))
    spec = SweepSpec(**SPEC)
    with sessions() as s:
        sweep_id = store_sweep(s, SweepRequest(spec=spec, name="kill-driver"), settings)[0].id
    context = RunContext(database_url=settings.database_url, storage_path=settings.storage_path).write(
        Path(settings.storage_path).parent / "context.json")
    log = Path(settings.storage_path).parent / "driver.log"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_ADDRESS": cluster.gcs_address, "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    with open(log, "w") as out:
        driver = subprocess.Popen([sys.executable, "-m", "workers.driver", str(sweep_id), "--context", str(context)],
                                  cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def mid_sweep() -> dict | None:
        got = trial_rows(settings.database_url, sweep_id)
        assert driver.poll() is None, log.read_text()[-3000:]
        done = [t for t in got.values() if t["status"] == "completed"]
        mid = [t for t in got.values() if t["status"] == "running" and t["epochs"]]
        return got if done and mid else None

    before = wait_until(mid_sweep, 180, "a trial completed and another mid-way", poll_s=0.1)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(10)
    killed_at = time.monotonic() - t0

    result = resume_sweep(sessions, sweep_id, settings)  # the restart: a new driver job on the same head
    requeued = sorted(result.trials)

    def ended() -> str | None:
        with sessions() as s:
            status = s.get(Sweep, sweep_id).status
        return status if status in ("completed", "failed") else None

    assert wait_until(ended, 240, "the restarted sweep", poll_s=0.5) == "completed"
    seconds = time.monotonic() - t0
    after = trial_rows(settings.database_url, sweep_id)
    done_before = [tid for tid, t in before.items() if t["status"] == "completed"]
    assert done_before and set(requeued) <= set(after) - set(done_before)  # only unfinished trials run again
    assert [t["status"] for t in after.values()] == ["completed"] * 4  # completed = requested (the 4-trial grid)
    for tid in done_before:  # never re-run: same rows, same end time
        assert after[tid] == before[tid]
    for t in after.values():
        assert t["epochs"] == [1, 2, 3, 4] and t["dup_epochs"] == 0 and t["finals"] == 2
    print(f"driver killed at {killed_at:.1f} s with {len(done_before)} of {len(after)} trials done; "
          f"restarted sweep completed at {seconds:.1f} s")

