"""A two-host Ray cluster on one machine, for the cluster and node-fault tests: two network namespaces (the head
at 10.77.<n>.1, the worker node at 10.77.<n>.2) whose veth pairs meet on a bridge in the root namespace
(10.77.<n>.254), a Ray head started with `ip netns exec` in the first and a worker node joined with
`ray start --address` in the second, token auth on for both (one token file, RAY_AUTH_TOKEN_PATH). PostgreSQL
(127.0.0.1 in the root namespace) is reached from both namespaces through a socat forwarder listening on the
bridge's address. Everything is torn down in `close()`, even after a failure: each `ray start --block` process
group, any process left with this cluster's temp dir on its command line (by pid), socat, the namespaces, the
bridge. `ray stop` is never used: the namespaces share one PID namespace, so it would stop other Ray runtimes of
this machine too."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent
GCS_PORT, DASHBOARD_PORT = 6379, 8265


def unavailable() -> str | None:
    """Why this machine cannot build the cluster (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (ip netns, veth, bridge)"
    if shutil.which("ip") is None or shutil.which("socat") is None:
        return "needs iproute2's `ip` and `socat`"
    probe = f"rgprobe{uuid.uuid4().hex[:6]}"
    r = subprocess.run(["ip", "netns", "add", probe], check=False, capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns add` fails here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


class NetnsCluster:
    """`subnet` n gives 10.77.n.0/24; `pg_port` is where PostgreSQL listens on 127.0.0.1 (forwarded to
    <bridge ip>:`forward_port`)."""

    def __init__(self, *, subnet: int = 0, pg_port: int = 5432, forward_port: int = 15432, cpus_per_node: int = 1):
        tag = uuid.uuid4().hex[:5]
        self.ns_head, self.ns_worker, self.bridge = f"rgh{tag}", f"rgw{tag}", f"rgbr{tag}"
        self.head_ip, self.worker_ip, self.bridge_ip = f"10.77.{subnet}.1", f"10.77.{subnet}.2", f"10.77.{subnet}.254"
        self.pg_port, self.forward_port, self.cpus = pg_port, forward_port, cpus_per_node
        self.tmp = Path(tempfile.mkdtemp(prefix="rgc-"))  # shared by both "hosts": checkpoints, token, logs
        self.storage_path = str(self.tmp / "ray_results")
        self.token_path = self.tmp / "ray_token"
        self.procs: dict[str, subprocess.Popen] = {}
        self.links: list[str] = []

    # -- network ------------------------------------------------------------------------------------------
    def _network(self) -> None:
        _sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.links.append(self.bridge)
        _sh("ip", "addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge)
        _sh("ip", "link", "set", self.bridge, "up")
        for ns, ip, side in ((self.ns_head, self.head_ip, "h"), (self.ns_worker, self.worker_ip, "w")):
            _sh("ip", "netns", "add", ns)
            inner, outer = f"{ns}i", f"{ns}o"
            _sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            self.links.append(outer)
            _sh("ip", "link", "set", inner, "netns", ns)
            _sh("ip", "link", "set", outer, "master", self.bridge)
            _sh("ip", "link", "set", outer, "up")
            _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", inner)
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        self._spawn("socat", ["socat", f"TCP-LISTEN:{self.forward_port},bind={self.bridge_ip},fork,reuseaddr",
                              f"TCP:127.0.0.1:{self.pg_port}"])

    # -- Ray ----------------------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Ray's auth variables and our interpreter first on PATH (a job's `python` is the venv's)."""
        return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path),
                "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
                "RAY_DISABLE_USAGE_STATS": "1", "OMP_NUM_THREADS": "1"}

    def _spawn(self, name: str, cmd: list[str], ns: str | None = None) -> None:
        full = (["ip", "netns", "exec", ns] if ns else []) + cmd
        log = open(self.tmp / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(full, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, cwd=self.tmp)

    def _ray(self, name: str, ns: str, args: list[str]) -> None:
        self._spawn(name, [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", f"--num-cpus={self.cpus}",
                           "--num-gpus=0", *args], ns=ns)

    def start(self) -> NetnsCluster:
        self.token_path.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
        self.token_path.chmod(0o600)
        self._network()
        self._ray("head", self.ns_head, ["--head", f"--node-ip-address={self.head_ip}", f"--port={GCS_PORT}",
                                         "--include-dashboard=true", f"--dashboard-host={self.head_ip}",
                                         f"--dashboard-port={DASHBOARD_PORT}", f"--temp-dir={self.tmp / 'ray'}"])
        self.wait_nodes(1, 90)
        self._ray("worker", self.ns_worker, [f"--address={self.head_ip}:{GCS_PORT}",
                                             f"--node-ip-address={self.worker_ip}"])
        self.wait_nodes(2, 90)
        return self

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.head_ip}:{DASHBOARD_PORT}"

    def alive_nodes(self) -> list[str]:
        """IPs of the nodes the head lists as alive (Ray's state API on the dashboard, with the token)."""
        import httpx

        try:
            r = httpx.get(f"{self.dashboard_url}/api/v0/nodes", timeout=10,
                          headers={"Authorization": f"Bearer {self.token_path.read_text().strip()}"})
            rows = r.json()["data"]["result"]["result"] if r.status_code == 200 else []
        except (httpx.HTTPError, ValueError, KeyError):
            return []
        return sorted(n["node_ip"] for n in rows if n.get("state") == "ALIVE")

    def wait_nodes(self, n: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited: {(self.tmp / f'{name}.log').read_text()[-3000:]}")
            if len(self.alive_nodes()) >= n:
                return
            time.sleep(1)
        raise RuntimeError(f"fewer than {n} Ray nodes after {timeout_s} s; see {self.tmp}")

    def kill_worker_node(self) -> None:
        """SIGKILL the worker node's `ray start` process tree (raylet, its workers), as a host that dies."""
        self._kill_group("worker")

    def _kill_group(self, name: str) -> None:
        p = self.procs.get(name)
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)

    def _stragglers(self) -> list[int]:
        """Pids of processes with this cluster's temp dir on their command line (its Ray processes)."""
        mine, out = str(self.tmp).encode(), []
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if mine in (d / "cmdline").read_bytes():
                        out.append(int(d.name))
        return out

    def close(self) -> None:
        for name in ("worker", "head", "socat"):
            self._kill_group(name)
        for pid in self._stragglers():  # processes that left the group (Ray's workers, the job's driver): by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for ns in (self.ns_head, self.ns_worker):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        for link in reversed(self.links):
            subprocess.run(["ip", "link", "del", link], check=False, capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh schema in the PostgreSQL database at `pg_url` (dropped afterwards); yields its name. Raises
    RuntimeError naming the URL when the server does not answer."""
    from sqlalchemy import create_engine, text

    schema = f"rg_cluster_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:
        admin.dispose()
        raise RuntimeError(f"PostgreSQL at {pg_url} unreachable ({type(e).__name__})") from e
    try:
        yield schema
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@contextlib.contextmanager
def running_cluster(pg_url: str, *, subnet: int) -> Iterator[tuple[NetnsCluster, str]]:
    """A started two-node cluster and the URL of a fresh PostgreSQL schema as both namespaces reach it (through the
    forwarder on the bridge); everything removed afterwards, also after a failure."""
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    with pg_schema(pg_url) as schema:
        cluster = NetnsCluster(subnet=subnet, pg_port=url.port or 5432, forward_port=_free_port())
        try:
            cluster.start()
            forwarded = url.set(host=cluster.bridge_ip, port=cluster.forward_port).update_query_dict(
                {"options": f"-csearch_path={schema}"})
            yield cluster, forwarded.render_as_string(hide_password=False)
        finally:
            cluster.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def cluster_or_skip(pg_url: str, *, subnet: int) -> Iterator[tuple[NetnsCluster, str]]:
    """`running_cluster`, or a pytest skip saying why this machine cannot build one (not root, no `ip netns`, no
    socat) or why PostgreSQL cannot be reached from the namespaces."""
    import pytest

    if reason := unavailable():
        pytest.skip(f"two-namespace cluster: {reason}")
    try:
        with running_cluster(pg_url, subnet=subnet) as got:
            yield got
    except RuntimeError as e:
        if "unreachable" in str(e):
            pytest.skip(str(e))
        raise
