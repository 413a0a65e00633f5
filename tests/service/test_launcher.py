"""The launcher against a real local Ray head: token auth on the dashboard, a job through the submit path."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service import launcher
from service.settings import Settings

JOB_TIMEOUT_S = 30.0  # seconds for the trivial job to reach a terminal state


def test_remote_address_forms() -> None:
    by_url = launcher.ensure_ray_head(Settings(ray_address="http://head:8265/"))
    assert (by_url.address, by_url.gcs_address, by_url.started_by_us) == ("http://head:8265", "", False)
    by_gcs = launcher.ensure_ray_head(Settings(ray_address="head:6379", dashboard_port=9000))
    assert (by_gcs.dashboard_url, by_gcs.gcs_address) == ("http://head:9000", "head:6379")


def test_stop_ignores_a_stale_state_file(tmp_path: Path) -> None:
    settings = Settings(ray_temp_dir=str(tmp_path), dashboard_port=1234)
    state = tmp_path / "robustgrid-head-1234.json"
    state.write_text(json.dumps({"pid": os.getpid()}))  # a live pid that is not a Ray head: must not be killed
    assert launcher.stop_local_head(settings) is False
    assert not state.exists()
    assert launcher.stop_local_head(settings) is False  # nothing to stop


# ------------------------------------------------------------------------------------- Ray's token, as Ray looks it up


@pytest.fixture
def token_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No token anywhere: both variables unset and an empty home (the default file is home/.ray/auth_token)."""
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / ".ray").mkdir(parents=True)
    return tmp_path


def test_token_lookup_order(token_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH names, else ~/.ray/auth_token (whitespace stripped)."""
    assert launcher._load_token() == "" and launcher.auth_headers() == {}
    (token_env / "home" / ".ray" / "auth_token").write_text("home-token\n")
    assert launcher._load_token() == "home-token"
    (token_env / "named").write_text("  named-token \n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_env / "named"))
    assert launcher._load_token() == "named-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "")  # set but empty: not a token
    assert launcher._load_token() == "named-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env-token")
    assert launcher._load_token() == "env-token"
    assert launcher.auth_headers() == {"Authorization": "Bearer env-token"}
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_env / "missing"))
    assert launcher._load_token() == "env-token"  # the variable wins; the named file is never read


@pytest.mark.parametrize(("content", "words"), [(None, "does not exist"), ("  \n", "is empty")])
def test_a_named_token_file_that_is_missing_or_empty_is_an_error(token_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 content: str | None, words: str) -> None:
    (token_env / "home" / ".ray" / "auth_token").write_text("home-token")  # no fallback to the default file
    named = token_env / "named"
    if content is not None:
        named.write_text(content)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(named))
    with pytest.raises(launcher.RayTokenError, match=f"RAY_AUTH_TOKEN_PATH names {named}, which {words}"):
        launcher.auth_headers()


def test_ensure_auth_token_writes_one_where_ray_looks(token_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = launcher.ensure_auth_token()  # the default file, 0600, 64 hex digits
    path = token_env / "home" / ".ray" / "auth_token"
    assert len(token) == 64 and int(token, 16) >= 0 and path.read_text() == token
    assert path.stat().st_mode & 0o777 == 0o600
    assert launcher.ensure_auth_token() == token  # kept, not replaced
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_env / "sub" / "named"))  # a named missing file: written
    named = launcher.ensure_auth_token()
    assert named != token and (token_env / "sub" / "named").read_text() == named


def test_ray_temp_dir_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.delenv("TMPDIR", raising=False)
    assert launcher._ray_temp_dir(Settings()) == Path("/tmp/ray")
    monkeypatch.setenv("RAY_TMPDIR", "/scratch")
    assert launcher._ray_temp_dir(Settings()) == Path("/scratch/ray")
    assert launcher._ray_temp_dir(Settings(ray_temp_dir="/x/y")) == Path("/x/y")


@pytest.fixture(scope="module")
def head() -> Iterator[tuple[Settings, launcher.RayCluster]]:
    """A private head: own temp dir (short path: Ray's unix sockets live under it), own token file, free ports."""
    tmp = Path(tempfile.mkdtemp(prefix="rgray-"))
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'test.db'}",
        storage_path=str(tmp / "results"),
        dashboard_port=launcher._free_port(),
        ray_port=launcher._free_port(),
        ray_num_cpus=2,
        ray_temp_dir=str(tmp / "ray"),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_TOKEN_PATH", str(tmp / "auth_token"))  # never touch ~/.ray/auth_token
        mp.delenv("RAY_AUTH_TOKEN", raising=False)
        cluster = launcher.ensure_ray_head(settings)
        try:
            yield settings, cluster
        finally:
            launcher.stop_local_head(settings)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.ray
def test_dashboard_requires_the_token(head: tuple[Settings, launcher.RayCluster]) -> None:
    settings, cluster = head
    assert cluster.started_by_us
    assert cluster.dashboard_url == launcher.dashboard_url(cluster) == f"http://127.0.0.1:{settings.dashboard_port}"
    assert cluster.gcs_address.endswith(f":{settings.ray_port}")
    token_file = Path(settings.ray_temp_dir or "").parent / "auth_token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    url = f"{cluster.dashboard_url}/api/version"
    assert httpx.get(url, timeout=5).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 403
    assert httpx.get(url, headers=launcher.auth_headers(), timeout=5).status_code == 200
    assert launcher.auth_headers() == {"Authorization": f"Bearer {launcher.ensure_auth_token()}"}


@pytest.mark.ray
def test_second_call_reuses_the_head(head: tuple[Settings, launcher.RayCluster]) -> None:
    settings, cluster = head
    again = launcher.ensure_ray_head(settings)
    assert not again.started_by_us
    assert (again.address, again.gcs_address) == (cluster.address, cluster.gcs_address)


@pytest.mark.ray
def test_job_runs_on_the_head(head: tuple[Settings, launcher.RayCluster]) -> None:
    settings, cluster = head
    code = (
        "import os, ray; ray.init(address='auto'); "
        "print('cpus=%d' % ray.cluster_resources()['CPU']); "
        "print('db=' + os.environ.get('ROBUSTGRID_DATABASE_URL', 'none')); print('extra=' + os.environ['RG_EXTRA'])"
    )
    job_id = launcher.submit_job(
        settings, cluster, entrypoint=shlex.join([sys.executable, "-c", code]), env={"RG_EXTRA": "42"},
        submission_id="robustgrid-test-job",
    )
    assert job_id == "robustgrid-test-job"
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (status := launcher.job_status(settings, cluster, job_id)) not in {"SUCCEEDED", "FAILED", "STOPPED"}:
        assert time.monotonic() < deadline, f"job still {status} after {JOB_TIMEOUT_S} s"
        time.sleep(0.5)
    logs = launcher.job_logs(settings, cluster, job_id)
    assert status == "SUCCEEDED", logs
    assert "cpus=2" in logs
    assert "db=none" in logs  # settings never travel in the job's env (the driver reads its run context file)
    assert "extra=42" in logs
    assert launcher.stop_job(settings, cluster, job_id) is False  # already finished: nothing to stop


@pytest.mark.ray
def test_sweep_job_id_and_stop(head: tuple[Settings, launcher.RayCluster]) -> None:
    settings, cluster = head
    job_id = launcher.submit_sweep_job(settings, cluster, sweep_id=7, data_root=None)
    assert job_id.startswith("robustgrid-sweep-7-")
    assert launcher.job_status(settings, cluster, job_id) in {"PENDING", "RUNNING", "SUCCEEDED", "FAILED"}
    launcher.stop_job(settings, cluster, job_id)
