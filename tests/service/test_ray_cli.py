"""`robustgrid ray up | down | status` (service/cli/ray.py) on a private local head: own temp dir, token file, ports."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service import launcher
from service.cli import app

runner = CliRunner()


def test_up_and_down_refuse_a_remote_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTGRID_RAY_ADDRESS", "http://head:8265")
    for verb in ("up", "down"):
        r = runner.invoke(app, ["ray", verb])
        assert r.exit_code == 2
        assert "error: ray_address: ROBUSTGRID_RAY_ADDRESS='http://head:8265' names a remote cluster" in r.output


def test_status_and_down_without_a_head(tmp_path: Path) -> None:
    port = str(launcher._free_port())  # nothing listens there
    r = runner.invoke(app, ["ray", "status", "--dashboard-port", port, "--temp-dir", str(tmp_path)])
    assert r.exit_code == 1
    assert f"no Ray head answers at http://127.0.0.1:{port} (robustgrid ray up starts one)" in r.output
    r = runner.invoke(app, ["ray", "down", "--dashboard-port", port, "--temp-dir", str(tmp_path)])
    assert r.exit_code == 0 and "nothing stopped" in r.output


@pytest.fixture
def private_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[str], Path]]:
    tmp = Path(tempfile.mkdtemp(prefix="rgcli-"))  # short: Ray's unix sockets live under the temp dir
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp / "auth_token"))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("ROBUSTGRID_RAY_ADDRESS", raising=False)
    monkeypatch.setenv("ROBUSTGRID_RAY_PORT", str(launcher._free_port()))
    opts = ["--dashboard-port", str(launcher._free_port()), "--temp-dir", str(tmp / "ray")]
    try:
        yield opts, tmp
    finally:
        runner.invoke(app, ["ray", "down", *opts])  # never leave a head running
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.ray
def test_up_status_down(private_ray: tuple[list[str], Path]) -> None:
    opts, tmp = private_ray
    port = opts[1]
    up = runner.invoke(app, ["ray", "up", "--num-cpus", "2", *opts])
    assert up.exit_code == 0, up.output
    assert f"Ray dashboard: http://127.0.0.1:{port}  (it asks for a token: paste the content of {tmp / 'auth_token'})" \
        in up.output
    assert f"export RAY_AUTH_MODE=token  # then: ray job list --address http://127.0.0.1:{port}" in up.output
    assert "Ray head started; GCS 127.0.0.1:" in up.output and "Stop it: robustgrid ray down" in up.output
    again = runner.invoke(app, ["ray", "up", *opts])  # idempotent: finds the running head
    assert again.exit_code == 0 and "Ray head already running" in again.output

    deadline = time.monotonic() + 30.0  # the head's node registers with the state API shortly after start
    while True:
        st = runner.invoke(app, ["ray", "status", *opts])
        if "\n  127.0.0.1" in st.output or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert st.exit_code == 0, st.output
    assert f"Ray dashboard: http://127.0.0.1:{port}" in st.output
    assert "nodes (1):" in st.output and "jobs (0):" in st.output
    node = next((line for line in st.output.splitlines() if line.startswith("  127.0.0.1")), st.output)
    assert "head" in node and "ALIVE" in node and "CPU 2" in node
    pid = int(st.output.split("local head: pid ")[1].split()[0])
    assert Path(f"/proc/{pid}").exists()

    down = runner.invoke(app, ["ray", "down", *opts])
    assert down.exit_code == 0 and "stopped the local Ray head" in down.output
    deadline = time.monotonic() + 10.0  # SIGKILLed processes of the group are reaped by init shortly after
    while _group_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(pid), _group_alive(pid)  # the head's whole process group is gone
    assert runner.invoke(app, ["ray", "status", *opts]).exit_code == 1


def _group_alive(pgid: int) -> list[str]:
    """Command lines of the live (not zombie) processes of process group `pgid`."""
    alive = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            if os.getpgid(int(entry.name)) == pgid and stat.rsplit(")", 1)[1].split()[0] != "Z":
                alive.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:100])
        except (ValueError, OSError):
            continue
    return alive
