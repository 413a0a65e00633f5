"""docker/: the compose files parse (`docker compose config`, or compose v1's `docker-compose config`) with the
documented variables, and the image pins the versions this suite runs with (so they exist on the registry)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"
ENV = {"RAY_AUTH_TOKEN": "t0k3n", "HEAD_IP": "10.0.0.1", "NODE_IP": "10.0.0.2", "POSTGRES_PASSWORD": "pw",
       "PATH": "/usr/local/bin:/usr/bin:/bin"}


def _compose() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def _config(file: str, *extra: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    compose = _compose()
    if compose is None:
        pytest.skip("no docker compose client")
    return subprocess.run([*compose, "-f", str(DOCKER / file), *extra, "config"], capture_output=True, text=True, check=False,
                          env=env, cwd=DOCKER.parent, timeout=60)


def _services(r: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)["services"]


def _cmd(service: dict[str, object]) -> str:
    cmd = service["command"]
    return " ".join(cmd) if isinstance(cmd, list) else " ".join(str(cmd).split())


def test_head_compose_config() -> None:
    services = _services(_config("compose.yaml"))
    assert set(services) >= {"postgres", "ray-head", "api"}  # compose v1 also lists the init profile's service
    head = _cmd(services["ray-head"])
    assert "--node-ip-address=10.0.0.1 --port=6379" in head and "--dashboard-host=127.0.0.1" in head
    port = services["postgres"]["ports"][0]  # compose v1: a string; v2: a mapping
    assert (port.startswith("127.0.0.1:5432:5432") if isinstance(port, str)
            else (port["host_ip"], int(port["published"])) == ("127.0.0.1", 5432))
    assert "ROBUSTGRID_DATABASE_URL" not in services["ray-head"]["environment"]  # only in the 0600 run context
    assert services["api"]["environment"]["ROBUSTGRID_DATABASE_URL"].endswith("pw@127.0.0.1:5432/robustgrid")
    assert services["ray-head"]["environment"]["RAY_AUTH_MODE"] == "token"
    init = _services(_config("compose.yaml", "--profile", "init"))
    assert "cifar10(Path('/shared/data'))" in _cmd(init["data-init"])


def test_worker_compose_config_and_required_variables() -> None:
    services = _services(_config("compose.worker.yaml"))
    assert set(services) == {"ray-worker"}
    assert "--address=10.0.0.1:6379 --node-ip-address=10.0.0.2" in _cmd(services["ray-worker"])
    assert "ROBUSTGRID_DATABASE_URL" not in services["ray-worker"]["environment"]  # trials never use the database
    missing = _config("compose.worker.yaml", env={k: v for k, v in ENV.items() if k != "RAY_AUTH_TOKEN"})
    assert missing.returncode != 0 and "RAY_AUTH_TOKEN" in missing.stderr


def test_image_pins_the_versions_the_suite_runs() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    pins = dict(re.findall(r'"([a-z]+)(?:\[[^\]]*\])?==([0-9][^"]*)"', text))
    assert pins == {"torch": importlib.metadata.version("torch").split("+")[0],
                    "torchvision": importlib.metadata.version("torchvision").split("+")[0],
                    "ray": importlib.metadata.version("ray")}, json.dumps(pins)
    assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", text, re.MULTILINE)
