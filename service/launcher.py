"""The only code in ``service/`` that talks to Ray: start or find the Ray head, submit and watch sweep jobs.

Ray token auth (Ray >= 2.52): every dashboard / job REST request needs ``Authorization: Bearer <token>``; the token
is the first of ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token`` (Ray's documented order).
We send it explicitly: ``JobSubmissionClient`` adds it only when *this* process has ``RAY_AUTH_MODE=token``.
Ray is imported lazily so that importing this module (e.g. from the API) stays cheap."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shlex
import signal
import socket
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from service.settings import Settings

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

logger = logging.getLogger(__name__)

HEAD_START_TIMEOUT_S = 60.0  # seconds to wait for a fresh head's dashboard to answer
HEAD_STOP_TIMEOUT_S = 15.0  # seconds between SIGTERM and SIGKILL of the head's process group


@dataclass(frozen=True)
class RayCluster:
    address: str  # job-submission address: the dashboard URL, http://host:port
    gcs_address: str  # host:port of the GCS ("" when unknown, e.g. a remote cluster given by dashboard URL)
    dashboard_url: str
    started_by_us: bool  # True when this call started the local head (the caller may stop it)


class RayUnavailable(RuntimeError):
    """The Ray head cannot be asked or used (connection refused, timeout, HTTP 5xx, a rejected token, not a Ray
    dashboard, a local head that would not start): nothing is known about the job, so nothing may be concluded
    from it. The API answers 503."""


class RayTokenError(RuntimeError):
    """``RAY_AUTH_TOKEN_PATH`` names a token file that cannot be read or is empty (Ray itself refuses to start)."""


def _token_path() -> Path:
    """Where Ray reads its token file: ``RAY_AUTH_TOKEN_PATH`` when set (non-empty), else ``~/.ray/auth_token``."""
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def _load_token() -> str:
    """The token Ray itself would send, looked up as Ray documents it: ``RAY_AUTH_TOKEN`` (when non-empty), else the
    file named by ``RAY_AUTH_TOKEN_PATH`` (a missing or empty named file is an error, as it is for Ray), else
    ``~/.ray/auth_token``; surrounding whitespace stripped; "" when there is none."""
    if token := os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return token
    path, named = _token_path(), bool(os.environ.get("RAY_AUTH_TOKEN_PATH"))
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        if named:
            raise RayTokenError(f"RAY_AUTH_TOKEN_PATH names {path}, which does not exist; create it (e.g. "
                                "`ray get-auth-token --generate`) or unset RAY_AUTH_TOKEN_PATH") from None
        return ""
    except OSError as e:
        raise RayTokenError(f"cannot read the Ray auth token file {path}: {e.strerror}") from None
    if not token and named:
        raise RayTokenError(f"RAY_AUTH_TOKEN_PATH names {path}, which is empty; write the cluster's token into it")
    return token


def ensure_auth_token() -> str:
    """Return the Ray auth token, first writing a new one (0600) where Ray looks for it when there is none."""
    path = _token_path()
    if not os.environ.get("RAY_AUTH_TOKEN", "").strip() and not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError), os.fdopen(  # O_EXCL: a concurrent writer's token wins
            os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w"
        ) as f:
            f.write(secrets.token_hex(32))  # same format as `ray get-auth-token --generate`
            logger.info("generated a Ray auth token at %s", path)
    return _load_token()


def auth_headers() -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}`` for the dashboard, or ``{}`` when no token exists here."""
    if token := _load_token():
        return {"Authorization": f"Bearer {token}"}
    logger.warning("no Ray auth token found; requests to an authenticated cluster will get HTTP 401")
    return {}


def dashboard_url(cluster: RayCluster) -> str:
    return cluster.dashboard_url


def _probe_dashboard(url: str) -> int | None:  # status of an authenticated GET /api/version; None: no answer
    try:
        return httpx.get(f"{url}/api/version", headers=auth_headers(), timeout=2.0).status_code
    except httpx.TransportError:
        return None


def _free_port() -> int:  # racy by nature, but only used for ports nobody else asks for by number
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_temp_dir(settings: Settings) -> Path:
    """``settings.ray_temp_dir``, else Ray's documented default: ``$RAY_TMPDIR/ray`` (``$TMPDIR/ray``, /tmp/ray)."""
    if settings.ray_temp_dir:
        return Path(settings.ray_temp_dir)
    return Path(os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp") / "ray"


def _state_file(settings: Settings) -> Path:  # {"pid": ..., **RayCluster} of the head we started
    return _ray_temp_dir(settings) / f"robustgrid-head-{settings.dashboard_port}.json"


def _remote_cluster(address: str, dashboard_port: int) -> RayCluster:  # dashboard URL or GCS host:port
    if address.startswith(("http://", "https://")):
        return RayCluster(address=address.rstrip("/"), gcs_address="", dashboard_url=address.rstrip("/"),
                          started_by_us=False)
    url = f"http://{address.rsplit(':', 1)[0]}:{dashboard_port}"
    return RayCluster(address=url, gcs_address=address, dashboard_url=url, started_by_us=False)


def ensure_ray_head(settings: Settings) -> RayCluster:
    """The cluster to submit to: ``settings.ray_address``, else a local head (reused when one already answers)."""
    if settings.ray_address:
        return _remote_cluster(settings.ray_address, settings.dashboard_port)
    url = f"http://{settings.dashboard_host}:{settings.dashboard_port}"
    ensure_auth_token()
    state_file, status = _state_file(settings), _probe_dashboard(url)
    if status == 200:
        gcs = json.loads(state_file.read_text())["gcs_address"] if state_file.is_file() else ""
        logger.info("reusing the Ray head at %s", url)
        return RayCluster(address=url, gcs_address=gcs, dashboard_url=url, started_by_us=False)
    if status is not None:
        raise RayUnavailable(f"{url}/api/version answers HTTP {status}: not a Ray head that accepts our token")
    return _start_local_head(settings, url, state_file)


def _start_local_head(settings: Settings, url: str, state_file: Path) -> RayCluster:
    temp_dir = _ray_temp_dir(settings)
    temp_dir.mkdir(parents=True, exist_ok=True)
    gcs_port = settings.ray_port or _free_port()
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--disable-usage-stats",
           "--include-dashboard=true", f"--port={gcs_port}", f"--node-ip-address={settings.ray_node_ip}",
           f"--dashboard-host={settings.dashboard_host}",
           f"--dashboard-port={settings.dashboard_port}", f"--temp-dir={temp_dir}",
           # random ports so that two local heads (e.g. parallel test sessions) never share a job agent
           f"--dashboard-agent-listen-port={_free_port()}", f"--ray-client-server-port={_free_port()}"]
    cmd += [] if settings.ray_num_cpus is None else [f"--num-cpus={settings.ray_num_cpus}"]
    # auth stays on whatever the caller's env says; no Serve replicas to drain before a local head stops
    env = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0", **os.environ, "RAY_AUTH_MODE": "token"}
    if settings.ray_preload_modules:  # its workers import these at start: trial actors skip the imports (B5)
        env["RAY_preload_python_modules"] = settings.ray_preload_modules
    log_path = temp_dir / f"robustgrid-head-{settings.dashboard_port}.log"
    logger.info("starting a local Ray head: %s (log: %s)", shlex.join(cmd), log_path)
    # own session: outlives the request and the API process, stops by process group; no Popen to warn on GC
    files = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
             (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
             (os.POSIX_SPAWN_DUP2, 1, 2)]
    pid = os.posix_spawn(cmd[0], cmd, env, file_actions=files, setsid=True)
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while _probe_dashboard(url) != 200:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            raise RayUnavailable(f"`ray start` exited early; see {log_path}")
        if time.monotonic() > deadline:
            _kill_group(pid)
            raise RayUnavailable(f"no Ray dashboard at {url} after {HEAD_START_TIMEOUT_S} s; see {log_path}")
        time.sleep(0.25)
    cluster = RayCluster(address=url, gcs_address=f"{settings.ray_node_ip}:{gcs_port}",
                         dashboard_url=url, started_by_us=True)
    state_file.write_text(json.dumps({"pid": pid, **asdict(cluster)}))
    logger.info("Ray head up: dashboard %s, GCS %s, pid %d", url, cluster.gcs_address, pid)
    return cluster


def _kill_group(pid: int) -> None:
    """SIGTERM `ray start --block` (it stops its Ray processes), then SIGKILL what is left of its group."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + HEAD_STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # pgid == pid: the head leads its own session


def _alive(pid: int) -> bool:  # reaps the head when it is our child; polls it when another process started it
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return Path(f"/proc/{pid}").exists()


def stop_local_head(settings: Settings) -> bool:
    """Stop the local head that ``ensure_ray_head`` started for these settings; False when there is none."""
    state_file = _state_file(settings)
    if not state_file.is_file():
        return False
    pid = int(json.loads(state_file.read_text())["pid"])
    state_file.unlink()
    if not _is_our_head(pid):  # stale state file: the head died and its pid may belong to someone else now
        logger.warning("no running `ray start --head` with pid %d; removed the stale %s", pid, state_file)
        return False
    logger.info("stopping the local Ray head (pid %d)", pid)
    _kill_group(pid)
    return True


def _is_our_head(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"start" in cmdline and b"--head" in cmdline and os.getpgid(pid) == pid


def job_client(cluster: RayCluster) -> JobSubmissionClient:
    """A ``JobSubmissionClient`` for the cluster that sends our auth token. RayUnavailable when the dashboard does
    not answer (the client asks it at construction and raises ConnectionError)."""
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(cluster.address, headers=auth_headers())
    except OSError as e:  # ConnectionError: refused, no route, timed out
        raise RayUnavailable(f"the Ray dashboard at {cluster.address} does not answer ({type(e).__name__}: {e})") \
            from e


def _job_env(settings: Settings, env: Mapping[str, str] | None) -> dict[str, str]:
    """The job's environment variables: only what the caller adds. Settings never travel here (the runtime env is
    visible in the dashboard and the job API); the driver gets them from its run context file."""
    return dict(env or {})


# A head's job agent comes up a few seconds after the dashboard answers; until then Ray refuses a submission with a
# 500 saying so ("please try again later"). Retried for this long, then the error stands.
AGENT_WAIT_S = 30.0
NO_AGENT = "No available agent to submit job"


def submit_job(settings: Settings, cluster: RayCluster, *, entrypoint: str, env: Mapping[str, str] | None = None,
               submission_id: str | None = None, metadata: Mapping[str, str] | None = None) -> str:
    """Submit any shell entrypoint as a Ray job (with `env` as its environment variables and `metadata` shown by
    the dashboard's job page and `ray job list`); returns the job id. Ray's "no available agent" answer (a head
    just started) is retried with backoff for AGENT_WAIT_S; any other error is raised at once."""
    client, deadline, delay = job_client(cluster), time.monotonic() + AGENT_WAIT_S, 0.25
    while True:
        try:
            job_id = client.submit_job(entrypoint=entrypoint, submission_id=submission_id,
                                       runtime_env={"env_vars": _job_env(settings, env)},
                                       metadata=dict(metadata or {}))
            break
        except OSError as e:  # the connection dropped (requests' ConnectionError is an OSError)
            raise RayUnavailable(f"the Ray dashboard at {cluster.address} does not answer ({type(e).__name__}: "
                                 f"{e})") from e
        except RuntimeError as e:
            if NO_AGENT not in str(e) or time.monotonic() + delay > deadline:
                raise
            logger.info("Ray's job agent is not up yet; submitting again in %.2f s", delay)
            time.sleep(delay)
            delay = min(2 * delay, 4.0)
    logger.info("submitted Ray job %s: %s", job_id, entrypoint)
    return str(job_id)


def run_context_path(settings: Settings, submission_id: str) -> Path:
    """Where a job's run context goes: `<storage_path>/run-contexts/<submission id>.json` (shared storage on a
    cluster, so the driver can read it); a remote (URI) storage path holds no files of ours: the Ray temp dir's
    parent, or the system's temp dir, which only a driver on this machine (a local head) can read."""
    from search_spaces.run_context import CONTEXT_DIR

    if "://" not in settings.storage_path:
        base = Path(settings.storage_path)
    else:
        import tempfile

        base = Path(settings.ray_temp_dir or tempfile.gettempdir()) / "robustgrid"
    return base / CONTEXT_DIR / f"{submission_id}.json"


def sweep_metadata(settings: Settings, sweep_id: int) -> dict[str, str]:
    """What the Ray dashboard shows of a sweep job (strings, as Ray's job metadata must be): robustgrid_sweep_id,
    robustgrid_sweep_name, robustgrid_trials (stored trial rows; a search's budget of trials), robustgrid_owner
    (the API token's owner, "" for the CLI). Only the sweep id when the store cannot be read."""
    from pydantic import ValidationError
    from sqlalchemy import func, select
    from sqlalchemy.exc import SQLAlchemyError

    from db.engine import make_engine, session_factory
    from db.models import Trial
    from db.sweeps import get_sweep
    from search_spaces.stored import StoredSweep

    meta = {"robustgrid_sweep_id": str(sweep_id)}
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as s:
            sweep = get_sweep(s, sweep_id=sweep_id)
            if sweep is None:
                return meta
            trials = s.scalar(select(func.count()).select_from(Trial).where(Trial.sweep_id == sweep_id)) or 0
            search = StoredSweep.model_validate(sweep.spec).spec.search
            if not trials and search is not None:  # a search creates its rows as it samples
                trials = search.budget_trials or 0
            meta |= {"robustgrid_sweep_name": sweep.name, "robustgrid_owner": sweep.owner or "",
                     "robustgrid_trials": str(trials)}
    except (SQLAlchemyError, ValidationError) as e:  # metadata is for display: a sweep job is submitted without it
        logger.warning("sweep %d: no job metadata (%s)", sweep_id, type(e).__name__)
    finally:
        engine.dispose()
    return meta


def submit_sweep_job(settings: Settings, cluster: RayCluster, *, sweep_id: int, data_root: str | None) -> str:
    """Write the sweep's run context (database URL, storage path, data root, GPU memory; mode 0600) and submit
    ``python -m workers.driver <sweep_id> --context <file>`` (the project is installed in the cluster's Python),
    with the sweep's id, name, trial count and owner as the job's metadata (sweep_metadata)."""
    from search_spaces.run_context import RunContext

    submission_id = f"robustgrid-sweep-{sweep_id}-{uuid.uuid4().hex[:8]}"
    context = RunContext(database_url=settings.database_url, storage_path=settings.storage_path,
                         data_root=data_root, gpu_memory_gib=settings.gpu_memory_gib)
    path = context.write(run_context_path(settings, submission_id))
    # A local head runs our own interpreter; a remote cluster runs whatever `python` its image has.
    python = sys.executable if not settings.ray_address else "python"
    entrypoint = shlex.join([python, "-m", "workers.driver", str(sweep_id), "--context", str(path)])
    return submit_job(settings, cluster, entrypoint=entrypoint, submission_id=submission_id,
                      metadata=sweep_metadata(settings, sweep_id))


def submit_evaluation_job(settings: Settings, cluster: RayCluster, *, sweep_id: int, trial_ids: list[int],
                          attack: str, checkpoints: tuple[str, ...], data_root: str | None, force: bool = False) -> str:
    """Write a run context and submit ``python -m workers.posthoc <sweep_id> --context <file> --trials ... --attack
    ...`` (a post-hoc evaluation of stored checkpoints: one Ray task per trial and checkpoint)."""
    from search_spaces.run_context import RunContext

    submission_id = f"robustgrid-evaluate-{sweep_id}-{attack}-{uuid.uuid4().hex[:8]}"
    context = RunContext(database_url=settings.database_url, storage_path=settings.storage_path,
                         data_root=data_root, gpu_memory_gib=settings.gpu_memory_gib)
    path = context.write(run_context_path(settings, submission_id))
    python = sys.executable if not settings.ray_address else "python"
    args = [python, "-m", "workers.posthoc", str(sweep_id), "--context", str(path), "--attack", attack,
            "--trials", ",".join(map(str, trial_ids)), "--checkpoints", ",".join(checkpoints)]
    entrypoint = shlex.join(args + (["--force"] if force else []))
    return submit_job(settings, cluster, entrypoint=entrypoint, submission_id=submission_id)


JOB_REQUEST_TIMEOUT_S = 10.0  # seconds for one request to the Ray Jobs REST API


class JobNotFound(LookupError):
    """The Ray dashboard answers but does not know the job id (HTTP 404): no job runs under that id there."""


def _job_request(cluster: RayCluster, method: str, job_id: str, suffix: str = "") -> dict[str, Any]:
    """One call of the Ray Jobs REST API (``/api/jobs/<id><suffix>``, documented by Ray alongside the SDK, which
    folds every failure into a RuntimeError): 200 -> its JSON; 404 from a Ray dashboard -> JobNotFound; anything
    else -> RayUnavailable."""
    where = f"Ray job {job_id!r}: the Ray dashboard at {cluster.address}"
    try:
        r = httpx.request(method, f"{cluster.address}/api/jobs/{job_id}{suffix}", headers=auth_headers(),
                          timeout=JOB_REQUEST_TIMEOUT_S)
        if r.status_code == 404 and _probe_dashboard(cluster.address) == 200:  # a Ray dashboard, no such job
            raise JobNotFound(f"Ray job {job_id!r} not found at {cluster.address}")
    except httpx.TransportError as e:  # refused, reset, timed out
        raise RayUnavailable(f"{where} does not answer ({type(e).__name__}: {e})") from e
    if r.status_code != 200:
        raise RayUnavailable(f"{where} answers HTTP {r.status_code} to {method} {r.url.path}: {r.text[:300]}")
    body = r.json()
    return body if isinstance(body, dict) else {}


def job_status(settings: Settings, cluster: RayCluster, job_id: str) -> str:
    """One of PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED. JobNotFound when the head does not know the job,
    RayUnavailable when the head cannot be asked."""
    return str(_job_request(cluster, "GET", job_id)["status"])


def stop_job(settings: Settings, cluster: RayCluster, job_id: str) -> bool:
    """Ask Ray to stop the job; False when it had already finished. JobNotFound, RayUnavailable as job_status."""
    return bool(_job_request(cluster, "POST", job_id, "/stop").get("stopped"))


def job_logs(settings: Settings, cluster: RayCluster, job_id: str) -> str:
    """The job's driver log. JobNotFound, RayUnavailable as job_status."""
    return str(_job_request(cluster, "GET", job_id, "/logs").get("logs", ""))


# ------------------------------------------------------------------------------------------ describe a running cluster


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    ip: str  # the address the node advertises (node_ip_address)
    state: str  # ALIVE | DEAD
    is_head: bool
    resources: dict[str, float]  # Ray's total resources of the node (CPU, GPU, memory in bytes, ...)


@dataclass(frozen=True)
class JobInfo:
    job_id: str  # the submission id (robustgrid-sweep-<id>-<hex> for a sweep)
    status: str
    metadata: dict[str, str]  # a sweep job's robustgrid_sweep_id, _sweep_name, _trials, _owner
    entrypoint: str


def login_help(cluster: RayCluster) -> str:
    """How a person opens the dashboard and how Ray's own CLI reaches the job API: both need the cluster's token;
    Ray's CLI also needs RAY_AUTH_MODE=token in its own environment (the mode is a per-process setting: a client
    cannot learn it from the head)."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        where = "the RAY_AUTH_TOKEN variable of this shell"
    else:
        where = str(_token_path()) + ("" if os.environ.get("RAY_AUTH_TOKEN_PATH") else " (or RAY_AUTH_TOKEN_PATH)")
    return (f"Ray dashboard: {cluster.dashboard_url}  (it asks for a token: paste the content of {where})\n"
            f"Ray's CLI:     export RAY_AUTH_MODE=token  # then: ray job list --address {cluster.address}")


def _dashboard_get(cluster: RayCluster, path: str) -> Any:
    try:
        r = httpx.get(f"{cluster.address}{path}", headers=auth_headers(), timeout=JOB_REQUEST_TIMEOUT_S)
    except httpx.TransportError as e:
        raise RayUnavailable(f"the Ray dashboard at {cluster.address} does not answer ({type(e).__name__})") from e
    if r.status_code != 200:
        raise RayUnavailable(f"the Ray dashboard at {cluster.address} answers HTTP {r.status_code} to {path}")
    return r.json()


def list_nodes(cluster: RayCluster) -> list[NodeInfo]:
    """The cluster's nodes (Ray's state API, GET /api/v0/nodes). RayUnavailable when the head cannot be asked."""
    body = _dashboard_get(cluster, "/api/v0/nodes?limit=1000&detail=true")
    rows = body.get("data", {}).get("result", {}).get("result", [])
    return [NodeInfo(node_id=str(n.get("node_id", "")), ip=str(n.get("node_ip", "")), state=str(n.get("state", "")),
                     is_head=bool(n.get("is_head_node")),
                     resources={k: float(v) for k, v in (n.get("resources_total") or {}).items()}) for n in rows]


def list_jobs(cluster: RayCluster) -> list[JobInfo]:
    """The cluster's submitted jobs (GET /api/jobs/), newest last. RayUnavailable when the head cannot be asked."""
    rows = _dashboard_get(cluster, "/api/jobs/")
    rows = sorted(rows, key=lambda j: j.get("start_time") or 0)
    return [JobInfo(job_id=str(j.get("submission_id") or j.get("job_id") or ""), status=str(j.get("status", "")),
                    metadata={str(k): str(v) for k, v in (j.get("metadata") or {}).items()},
                    entrypoint=str(j.get("entrypoint", ""))) for j in rows if j.get("type") != "DRIVER"]


def local_head(settings: Settings) -> RayCluster | None:
    """The running local head of these settings (the one ``ensure_ray_head`` started or would reuse), never starting
    one; None when none answers. A remote ``ray_address`` is returned as is (it is not probed)."""
    if settings.ray_address:
        return _remote_cluster(settings.ray_address, settings.dashboard_port)
    url = f"http://{settings.dashboard_host}:{settings.dashboard_port}"
    if _probe_dashboard(url) != 200:
        return None
    state_file = _state_file(settings)
    gcs = json.loads(state_file.read_text())["gcs_address"] if state_file.is_file() else ""
    return RayCluster(address=url, gcs_address=gcs, dashboard_url=url, started_by_us=False)


def head_pid(settings: Settings) -> int | None:
    """The pid of the `ray start --head --block` that ensure_ray_head started for these settings (it leads the
    process group of the head's Ray processes); None when there is none."""
    state_file = _state_file(settings)
    if not state_file.is_file():
        return None
    pid = int(json.loads(state_file.read_text())["pid"])
    return pid if _is_our_head(pid) else None
