"""Security of the cluster path (issue 12, item 4), measured on a private local head:

- what the head listens on (`ss -ltnup`, the processes of the head's process group): the dashboard and job API on
  127.0.0.1 only; nothing bound to a non-loopback address; the wildcard listeners that Ray 2.60 opens whatever
  `--node-ip-address` says (GCS and raylet, token-guarded; the README section "Running on a Ray cluster") and nothing else;
- `ray job list` works with the documented environment (RAY_AUTH_MODE=token and the token file) and not without it;
- the database URL and its password never reach the Ray job's runtime env, job info, `ray job list`, the job's
  logs, our log lines, or the API's responses.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from service import launcher
from service.settings import Settings

SECRET_URL = "postgresql+psycopg://u:secret@127.0.0.1:1/db"  # port 1: nothing answers, the driver fails fast
RAY_BIN = str(Path(sys.executable).with_name("ray"))
# Ray 2.60 turns `--node-ip-address=127.0.0.1` into the host's reachable IP (ray._private.services.
# resolve_ip_for_localhost), so these components listen beyond loopback whatever we pass; each needs Ray's token
# (the README section "Running on a Ray cluster" lists them and recommends a host firewall). ss shows the first 15 characters of a process name.
RAY_EXPOSED = {"gcs_server", "raylet", "ray::DashboardA", "ray::RuntimeEnv", "ray.util.client.server", "ray worker",
               "ray metrics"}  # every one in the README's ports table; "ray metrics" is read-only and not token-guarded
PG_ADMIN_URL = os.environ.get("ROBUSTGRID_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def head() -> Iterator[tuple[Settings, launcher.RayCluster, Path]]:
    tmp = Path(tempfile.mkdtemp(prefix="rgsec-"))
    settings = Settings(database_url=SECRET_URL, storage_path=str(tmp / "results"),
                        dashboard_port=launcher._free_port(), ray_port=launcher._free_port(), ray_num_cpus=1,
                        ray_temp_dir=str(tmp / "ray"), ray_preload_modules="")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_TOKEN_PATH", str(tmp / "auth_token"))
        mp.delenv("RAY_AUTH_TOKEN", raising=False)
        cluster = launcher.ensure_ray_head(settings)
        try:
            yield settings, cluster, tmp
        finally:
            launcher.stop_local_head(settings)
    shutil.rmtree(tmp, ignore_errors=True)


def listening(pgid: int) -> list[tuple[str, str, int]]:
    """(component, local address, port) of every listening TCP/UDP socket of process group `pgid`; the component is
    the process name, or the module of a `python -m` process."""
    out = subprocess.run(["ss", "-H", "-ltnup"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        addr, _, port = line.split()[4].rpartition(":")
        for name, pid in re.findall(r'"([^"]+)",pid=(\d+)', line):
            try:
                if os.getpgid(int(pid)) != pgid:
                    continue
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except (ProcessLookupError, OSError):
                continue
            if "-m" in argv:
                name = argv[argv.index("-m") + 1]
            elif any(a.endswith("default_worker.py") for a in argv):
                name = "ray worker"  # a (prestarted) worker process: its gRPC port
            elif any(a.endswith(("dashboard/dashboard.py", "_private/monitor.py")) for a in argv):
                name = "ray metrics"  # the dashboard head's and the autoscaler's Prometheus ports (44227, 44217)
            found.append((name, addr.strip("[]").removeprefix("::ffff:"), int(port)))
            break
    return found


@pytest.mark.ray
@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_the_dashboard_is_loopback_only_and_only_documented_ray_parts_listen_beyond(head) -> None:
    settings, _, _ = head
    pid = launcher.head_pid(settings)
    assert pid is not None
    deadline = time.monotonic() + 60.0  # the agents open their ports some seconds after the dashboard answers
    while not {"ray::DashboardA", "ray::RuntimeEnv"} <= {s[0] for s in listening(pid)}:
        assert time.monotonic() < deadline, listening(pid)
        time.sleep(1.0)
    time.sleep(2.0)
    socks = listening(pid)
    dashboard = {a for _, a, p in socks if p == settings.dashboard_port}
    assert dashboard == {"127.0.0.1"}  # the dashboard and the job API: loopback only
    exposed = {(n, a, p) for n, a, p in socks if a not in ("127.0.0.1", "::1")}
    assert {n for n, _, _ in exposed} <= RAY_EXPOSED, exposed
    assert {n for n, _, _ in exposed} >= {"gcs_server", "raylet"}  # measured: Ray 2.60 binds them to all interfaces


@pytest.mark.ray
def test_ray_job_list_works_with_the_documented_environment(head) -> None:
    _, cluster, tmp = head
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["RAY_AUTH_TOKEN_PATH"] = str(tmp / "auth_token")
    cmd = [RAY_BIN, "job", "list", "--address", cluster.address]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode != 0 and "token" in (refused.stdout + refused.stderr).lower()
    ok = subprocess.run(cmd, env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr[-1000:]


@pytest.mark.ray
def test_the_database_password_never_reaches_ray(head, caplog: pytest.LogCaptureFixture) -> None:
    settings, cluster, tmp = head
    caplog.set_level(logging.DEBUG)
    job_id = launcher.submit_sweep_job(settings, cluster, sweep_id=424242, data_root=None)
    context = launcher.run_context_path(settings, job_id)
    assert context.stat().st_mode & 0o777 == 0o600 and "secret" in context.read_text()  # only here
    deadline = time.monotonic() + 120.0
    while launcher.job_status(settings, cluster, job_id) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline
        time.sleep(1.0)
    info = httpx.get(f"{cluster.address}/api/jobs/{job_id}", headers=launcher.auth_headers(), timeout=10).text
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(tmp / "auth_token")}
    listed = subprocess.run([RAY_BIN, "job", "list", "--address", cluster.address], env=env, capture_output=True,
                            text=True, timeout=60, check=False).stdout
    logs = launcher.job_logs(settings, cluster, job_id)
    assert job_id in info and job_id in listed
    assert '"robustgrid_sweep_id": "424242"' in info  # the metadata the dashboard shows
    for where, text in {"job info": info, "ray job list": listed, "job logs": logs, "our logs": caplog.text}.items():
        assert "secret" not in text, where
        assert "postgresql" not in text, where
        assert "DATABASE_URL" not in text, where


@pytest.fixture
def pg_secret_url() -> Iterator[str]:
    """A fresh PostgreSQL database, reached by a URL with a password in it (the test server trusts local users)."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"rgsec_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as e:
        pytest.skip(f"no PostgreSQL at {admin.url!r}: {type(e).__name__}")
    url = admin.url.set(password="secret", database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.mark.postgres
def test_api_responses_and_logs_never_show_the_database_password(pg_secret_url: str, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from testkit.api_client import api_client

    caplog.set_level(logging.DEBUG)
    settings = Settings(database_url=pg_secret_url, storage_path=str(tmp_path / "results"),
                        ray_address=f"http://127.0.0.1:{launcher._free_port()}")  # no Ray: the launch fails
    with api_client(settings) as client:
        bodies = [client.get("/api/v1/sweeps"), client.get("/api/v1/sweeps/999"),
                  client.post("/api/v1/sweeps", json={"preset": "demo", "overrides": {"dataset": "synthetic"}}),
                  client.get("/api/v1/results")]
    assert [r.status_code for r in bodies][:2] == [200, 404]
    assert bodies[2].status_code >= 400  # the launch failed: Ray is unreachable
    for r in bodies:
        assert "secret" not in r.text and "postgresql" not in r.text, r.text[:300]
    assert "secret" not in caplog.text
    assert shlex.quote(pg_secret_url) not in caplog.text
