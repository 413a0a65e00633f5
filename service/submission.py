"""From a sweep request to a stored, launched sweep: resolve, validate, plan, write in one transaction, launch;
and the rest of a sweep's life: cancel, resume, extend.

Shared by the API route and the CLI so both take the same path. Nothing here imports torch or ray directly:
planning goes through search_spaces, launching through service.launcher. A grid sweep stores all its trials at
submission; a search sweep (tpe, nsga2) stores none: the driver's searcher inserts each trial row as it samples it,
before the trial runs, so the sweep holds exactly the trials the search ran.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from db.sweeps import (
    Sweep,
    add_trials,
    claim_launch,
    create_sweep,
    end_unfinished_trials,
    get_sweep,
    launch_in_progress,
    requeue_trials,
    set_sweep_job,
    set_sweep_spec,
    set_sweep_status,
    trial_hashes,
    trial_status_counts,
)
from search_spaces.catalog import DISK_DATASETS
from search_spaces.plan import Plan, make_plan
from search_spaces.presets import resolve
from search_spaces.provenance import code_version
from search_spaces.search import check_epochs
from search_spaces.spec import SpecError, SweepSpec
from search_spaces.stored import Extension, StoredSweep
from service.launch_claim import LAUNCH_LEASE_S, LAUNCH_WAIT_S, is_dead, launch_claim, wait_while_launching
from service.launcher import JobNotFound, RayUnavailable  # noqa: F401 - RayUnavailable: raised through here
from service.limits import check_spec_limits
from service.schemas import SweepRequest
from service.settings import Settings

if TYPE_CHECKING:
    from service import launcher as launcher_types

log = logging.getLogger(__name__)


def data_root_of(req: SweepRequest, settings: Settings) -> str | None:
    """The request's data root, confined to the roots the operator allows (`confined_data_root`), else the
    service's own; absolute either way (trials run in other working directories)."""
    if req.data_root:
        return confined_data_root(req.data_root, settings)
    return None if settings.data_root is None else str(Path(settings.data_root).expanduser().resolve())


def confined_data_root(requested: str, settings: Settings) -> str:
    """`requested` resolved (symlinks and `..` followed, `~` expanded) when that lies in or below the service's
    `data_root` or one of its `data_roots`; else SpecError on `data_root`. The error is one sentence whatever the
    path, so it never tells whether a path outside those roots exists (nor echoes a resolved path: `/proc/self`
    would name the server's PID). The CLI's own `--data-root` is its settings' `data_root`, so always allowed."""
    allowed = [Path(os.path.realpath(r)) for r in (settings.data_root, *settings.data_roots) if r]
    try:
        real = Path(os.path.realpath(Path(requested).expanduser()))
    except (OSError, ValueError):  # a NUL byte, a path too long
        real = None
    if real is not None and any(real == root or root in real.parents for root in allowed):
        return str(real)
    raise SpecError("data_root", "not inside a data root this service allows (the operator lists them in "
                                 "ROBUSTGRID_DATA_ROOTS; omit data_root to use the service's own)")


def resolve_spec(req: SweepRequest) -> SweepSpec:
    spec = resolve(req.preset, req.overrides) if req.preset is not None else req.spec
    assert spec is not None
    if req.name is not None:
        spec = spec.model_copy(update={"name": req.name})
    return spec


def check_data_root(spec: SweepSpec, data_root: str | None) -> None:
    """The data root must exist when given, and is required for datasets read from a local tree."""
    if data_root is not None and not Path(data_root).exists():
        raise SpecError("data_root", f"{data_root!r} does not exist")
    if data_root is None and spec.dataset in DISK_DATASETS:
        raise SpecError("data_root", f"dataset {spec.dataset!r} is read from disk: set a data root")


def plan_request(req: SweepRequest, settings: Settings, *, require_data_root: bool = True) -> tuple[SweepSpec, Plan]:
    """Resolve, check and plan. Submitting requires the data root (check_data_root); a plan alone runs nothing
    (`require_data_root=False`): it uses the root only where it exists, and only an image-folder dataset, whose
    sizes are read from its tree, then needs one."""
    spec = resolve_spec(req)
    check_spec_limits(spec, settings)  # before the grid is expanded: a 100,000-trial spec costs microseconds
    root = data_root_of(req, settings)
    if require_data_root:
        check_data_root(spec, root)
    elif root is not None and not Path(root).exists():
        root = None
    plan = make_plan(spec, max_trials=settings.max_trials, storage_path=settings.storage_path, data_root=root)
    check_search(spec, plan)
    return spec, plan


def check_search(spec: SweepSpec, plan: Plan) -> None:
    """What the search config can only check against the planned trials (ASHA's rungs against the epochs)."""
    if spec.search is not None:
        try:
            check_epochs(spec.search, [t.config.epochs for t in plan.trials])
        except ValueError as e:
            raise SpecError("search.asha.grace_period", str(e)) from None


def trial_rows(plan: Plan, *, with_idx: bool = True) -> list[dict[str, object]]:
    return [t.stored_row() | ({"idx": i} if with_idx else {}) for i, t in enumerate(plan.trials)]


def store_sweep(session: Session, req: SweepRequest, settings: Settings, *, owner: str | None = None,
                idempotency_key: str | None = None, launch_claim: str | None = None) -> tuple[Sweep, Plan]:
    """Validate and plan the request, then write the sweep (recording its `owner`, the API token's, and the
    request's `idempotency_key`) and all its trials in one transaction. A key another sweep holds raises
    IntegrityError (nothing written). With `launch_claim` (service.launch_claim.new_claim) the sweep is stored
    claimed for launching by this request (launch_sweep's `held_claim`): a replay that finds it waits for it."""
    spec, plan = plan_request(req, settings)
    name = spec.name or f"{req.preset or 'sweep'}-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10_000:04d}"
    stored = StoredSweep(spec=spec.model_copy(update={"name": name}), data_root=data_root_of(req, settings))
    with session.begin():
        sweep = create_sweep(session, name=name, spec=stored.to_json(),
                             trials=[] if stored.is_search else trial_rows(plan), code_version=code_version(),
                             owner=owner)
        if idempotency_key is not None:
            sweep.idempotency_key = idempotency_key
            session.flush()
        if launch_claim is not None:
            claim_launch(session, sweep_id=sweep.id, claim=launch_claim, lease_s=LAUNCH_LEASE_S)
    return sweep, plan


class IdempotencyKeyTaken(ValueError):
    """The Idempotency-Key names another owner's sweep."""


class IdempotencyKeyReused(ValueError):
    """The Idempotency-Key names a sweep stored from another request body."""


def sweep_for_key(session: Session, *, key: str, owner: str | None, req: SweepRequest | None = None) -> Sweep | None:
    """The sweep an earlier POST with this Idempotency-Key stored (None: none did). IdempotencyKeyTaken when
    it is another owner's; IdempotencyKeyReused when `req` asks for another sweep than the one stored (a retry
    must repeat its request: a changed body under an old key would otherwise silently get the old sweep)."""
    from sqlalchemy import select

    sweep = session.scalar(select(Sweep).where(Sweep.idempotency_key == key))
    if sweep is not None and sweep.owner != owner:
        raise IdempotencyKeyTaken("Idempotency-Key: already used by another owner's sweep; use a new key")
    if sweep is not None and req is not None:
        differ = _spec_differences(StoredSweep.model_validate(sweep.spec).spec, resolve_spec(req))
        if differ:
            raise IdempotencyKeyReused(f"Idempotency-Key: already used for another request (it differs in "
                                       f"{', '.join(differ)}); use a new key")
    return sweep


def _spec_differences(stored: SweepSpec, asked: SweepSpec) -> list[str]:
    """Top-level spec fields that differ (`name` only when the request names one: else the stored one was made)."""
    a, b = stored.model_dump(exclude={"name"}), asked.model_dump(exclude={"name"})
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    return (["name"] if asked.name is not None and asked.name != stored.name else []) + differ


def finish_interrupted(make_session: sessionmaker[Session], sweep_id: int, settings: Settings) -> None:
    """A replayed submission whose first attempt stored the sweep but died before launching it (queued, no Ray job):
    launch it now (LaunchFailed as for a first attempt), or wait for the request launching it now (launch_sweep).
    Any other sweep is left as it is. Holds no database connection while it waits."""
    with make_session() as s:
        sweep = get_sweep(s, sweep_id=sweep_id)
        if sweep is None or sweep.status != "queued" or sweep.ray_job_id is not None:
            return
        data_root = StoredSweep.model_validate(sweep.spec).data_root
    launch_sweep(make_session, sweep_id, settings, data_root=data_root)


class LaunchFailed(RuntimeError):
    """The sweep is stored (and now `failed`, with this reason) but its Ray job could not be launched."""


def launch_sweep(make_session: sessionmaker[Session], sweep_id: int, settings: Settings, *, data_root: str | None,
                 relaunch: bool = False, held_claim: str | None = None) -> str | None:
    """Submit the driver as a Ray job (starting a local head when the settings name no cluster), one launch at a
    time (service.launch_claim): returns the job id. A failed submission marks the (queued) sweep `failed` and its
    queued trials `cancelled`, with the reason, and raises LaunchFailed. None when there is nothing to launch: the
    sweep is not queued, or has a job and this is not a `relaunch` (resume, extend), or another request was
    launching it (waited for: it launched or failed; a claim whose request died lapses, then this one launches)."""
    deadline, dead = time.monotonic() + LAUNCH_WAIT_S, None
    while True:
        with launch_claim(make_session, sweep_id, relaunch=relaunch, dead_claim=dead, held=held_claim) as claimed:
            if claimed:
                return _submit(make_session, sweep_id, settings, data_root=data_root)
        if held_claim is not None:  # ours lapsed (a stalled database): claim it like anyone else
            held_claim = None
            continue
        with make_session() as s:
            if (holder := launch_in_progress(s, sweep_id=sweep_id)) is None:
                return None
        if is_dead(holder):  # its API process died mid-launch (and restarted): take it over now, once
            if holder == dead:
                return None  # the take-over was refused: nothing to launch
            dead = holder
            continue
        if not wait_while_launching(make_session, sweep_id, deadline) or relaunch:
            return None  # a relaunch that another request made is not made twice


def _submit(make_session: sessionmaker[Session], sweep_id: int, settings: Settings, *, data_root: str | None) -> str:
    from service import launcher

    try:
        cluster = launcher.ensure_ray_head(settings)
        job_id = launcher.submit_sweep_job(settings, cluster, sweep_id=sweep_id, data_root=data_root)
    except Exception as e:  # whatever stopped the launch is the sweep's failure reason
        reason = f"its Ray job could not be launched: {type(e).__name__}: {e}"[:4000]
        with make_session.begin() as s:  # no driver will run them: no trial is left queued
            sweep = get_sweep(s, sweep_id=sweep_id)
            if sweep is not None and sweep.status == "queued":  # (a claim lost to a stalled database: once only)
                end_unfinished_trials(s, sweep_id=sweep_id, status="cancelled", error=reason, actor="api")
                set_sweep_status(s, sweep_id=sweep_id, status="failed", actor="api", error=reason)
        raise LaunchFailed(f"sweep {sweep_id} is stored but {reason}") from e
    with make_session.begin() as s:
        set_sweep_job(s, sweep_id=sweep_id, ray_job_id=job_id, dashboard_url=launcher.dashboard_url(cluster))
    log.info("sweep %d submitted as Ray job %s", sweep_id, job_id)
    return job_id


# --------------------------------------------------------------------------------------- lifecycle: cancel, resume, extend

JOB_DONE = ("STOPPED", "FAILED", "SUCCEEDED")
STOP_WAIT_S = 30.0  # seconds to wait for a stopped driver job to end before its trials are marked cancelled


class LifecycleError(Exception):
    """A lifecycle request that cannot be carried out: `status_code` 404 (no such sweep), 409 (the sweep's state
    does not allow it) or 422 (bad input); `field` and `reason` say why. Nothing has been written."""

    def __init__(self, status_code: int, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.status_code, self.field, self.reason = status_code, field, reason


@dataclass
class LifecycleResult:
    sweep_id: int
    status: str  # the sweep's status afterwards
    ray_job_id: str | None  # the job stopped (cancel) or submitted (resume, extend)
    job_status: str | None  # the stopped job's final state (cancel)
    trials: list[int]  # ids of the trials cancelled, requeued or added


def existing_cluster(settings: Settings) -> launcher_types.RayCluster:
    """The cluster to ask about jobs, never starting a local head (no head: no running job). For cancel, resume and
    for polling a sweep (`robustgrid submit --wait`)."""
    from service import launcher

    if settings.ray_address:
        return launcher.ensure_ray_head(settings)  # a remote cluster: ensure_ray_head only builds its handle
    url = f"http://{settings.dashboard_host}:{settings.dashboard_port}"
    return launcher.RayCluster(address=url, gcs_address="", dashboard_url=url, started_by_us=False)


def job_state(settings: Settings, job_id: str | None) -> str | None:
    """The Ray job's status, or None when there is no job or the Ray head answers that it does not know it (then
    nothing runs it). Raises RayUnavailable when the head cannot be asked (refused, timeout, 5xx): the job may
    well be running, so callers must change nothing."""
    from service import launcher

    if not job_id:
        return None
    try:
        return launcher.job_status(settings, existing_cluster(settings), job_id)
    except JobNotFound as e:
        log.info("job %s: %s", job_id, e)
        return None


def _stop(settings: Settings, job_id: str | None, wait_s: float) -> str | None:
    from service import launcher

    state = job_state(settings, job_id)
    if job_id is None or state is None or state in JOB_DONE:
        return state
    try:
        launcher.stop_job(settings, existing_cluster(settings), job_id)
    except JobNotFound:
        return None
    deadline = time.monotonic() + wait_s
    while (state := job_state(settings, job_id)) not in (*JOB_DONE, None) and time.monotonic() < deadline:
        time.sleep(0.5)
    return state


def _get(session: Session, sweep_id: int, action: str) -> Sweep:
    """The sweep a lifecycle `action` (cancel, resume, extend) is about: 404 when there is none, 409 when it is an
    imported reference (results only: no spec to run, no Ray job)."""
    sweep = get_sweep(session, sweep_id=sweep_id)
    if sweep is None:
        raise LifecycleError(404, "sweep", f"sweep {sweep_id} not found")
    if sweep.imported:
        raise LifecycleError(409, "sweep", f"sweep {sweep_id} is an imported reference (published results, nothing "
                                           f"was run here): there is nothing to {action}")
    return sweep


def _unfinished(session: Session, sweep_id: int) -> int:
    counts = trial_status_counts(session, sweep_id=sweep_id)
    return counts["queued"] + counts["running"]


def cancel_sweep(make_session: sessionmaker[Session], sweep_id: int, settings: Settings, *,
                 wait_s: float = STOP_WAIT_S) -> LifecycleResult:
    """Cancel: the sweep becomes `cancelling` (sticky, so a dying driver cannot overwrite it), its Ray job is
    stopped (and awaited up to `wait_s`), then its queued and running trials end `cancelled` and so does the sweep.
    Finished trials and every stored result stay. 409 when the sweep has already ended with nothing unfinished.
    RayUnavailable when the Ray head cannot be asked about the job: before anything is written when that is
    found first; a head lost while the job is being stopped leaves the sweep `cancelling` (cancel again)."""
    with make_session() as s:
        sweep = _get(s, sweep_id, "cancel")
        if sweep.status in ("completed", "failed", "cancelled") and not _unfinished(s, sweep_id):
            raise LifecycleError(409, "status", f"sweep {sweep_id} is already {sweep.status}: nothing to cancel")
        job = sweep.ray_job_id
    job_state(settings, job)  # RayUnavailable here: nothing written
    with make_session.begin() as s:
        set_sweep_status(s, sweep_id=sweep_id, status="cancelling", actor="api")
    state = _stop(settings, job, wait_s)
    with make_session.begin() as s:
        ids = end_unfinished_trials(s, sweep_id=sweep_id, status="cancelled", error="cancelled by the user",
                                    actor="api")
        status = set_sweep_status(s, sweep_id=sweep_id, status="cancelled", actor="api").status
    log.info("sweep %d cancelled: job %s %s, %d trials cancelled", sweep_id, job, state, len(ids))
    return LifecycleResult(sweep_id, status, job, state, ids)


def resume_sweep(make_session: sessionmaker[Session], sweep_id: int, settings: Settings) -> LifecycleResult:
    """Resume after the driver (or the API, or a cancel) stopped it: running and cancelled trials go back to
    `queued` and a new driver job continues the sweep's experiments with Tuner.restore; finished trials are never
    run again. 409 while its job still runs, or when the sweep completed with nothing left (known from the store
    alone, so Ray is not asked); RayUnavailable, nothing written, when the Ray head cannot be asked."""
    with make_session() as s:
        sweep = _get(s, sweep_id, "resume")
        job, status, data_root = sweep.ray_job_id, sweep.status, StoredSweep.model_validate(sweep.spec).data_root
        if status == "completed" and not _unfinished(s, sweep_id):
            raise LifecycleError(409, "status", f"sweep {sweep_id} is completed: nothing to resume")
    state = job_state(settings, job)
    if state is not None and state not in JOB_DONE:
        raise LifecycleError(409, "status", f"sweep {sweep_id}'s driver job {job} is still {state}: nothing to resume")
    with make_session.begin() as s:
        ids = requeue_trials(s, sweep_id=sweep_id, statuses=("running", "cancelled"), driver_ended=True, actor="api")
        set_sweep_status(s, sweep_id=sweep_id, status="queued", actor="api")
    job = launch_sweep(make_session, sweep_id, settings, data_root=data_root, relaunch=True)
    return LifecycleResult(sweep_id, "queued", job, None, ids)


def extend_sweep(make_session: sessionmaker[Session], sweep_id: int, patch: dict[str, Any],
                 settings: Settings) -> LifecycleResult:
    """Extend a finished grid sweep: the stored spec with `patch` applied (e.g. more seeds, more widths) is
    planned; its configurations whose config_hash the sweep does not hold yet become new trial rows (one
    transaction, with the new spec and the extension recorded), and a new Tune experiment runs just those.
    409 while the sweep runs; 422 for a bad patch, a search sweep, or a patch that adds nothing."""
    with make_session() as s:
        sweep = _get(s, sweep_id, "extend")
        stored = StoredSweep.model_validate(sweep.spec)
        if stored.is_search:
            raise LifecycleError(422, "search", f"extend adds configurations to a grid sweep; sweep {sweep_id} is "
                                                f"a {stored.spec.search.algorithm} search")
        if sweep.status in ("queued", "running", "cancelling") or _unfinished(s, sweep_id):
            raise LifecycleError(409, "status", f"sweep {sweep_id} is {sweep.status}: only a finished sweep can be "
                                                f"extended (wait for it, or cancel it)")
        existing = trial_hashes(s, sweep_id=sweep_id)
    spec, plan = _extended_plan(stored, patch, settings)
    new = [row for row in trial_rows(plan, with_idx=False) if row["config_hash"] not in existing]
    if not new:
        raise LifecycleError(422, "patch", f"adds no configuration: all {len(plan.trials)} of the extended spec "
                                           f"are already among the sweep's {len(existing)} trials")
    if len(existing) + len(new) > settings.max_trials:
        raise LifecycleError(422, "patch", f"{len(existing)} + {len(new)} trials exceed the maximum of "
                                           f"{settings.max_trials}")
    with make_session.begin() as s:
        added = add_trials(s, sweep_id=sweep_id, trials=new)
        extension = Extension(first_idx=added[0].idx, n_trials=len(added), patch=patch)
        set_sweep_spec(s, sweep_id=sweep_id, spec=stored.extended(spec, extension).to_json())
        set_sweep_status(s, sweep_id=sweep_id, status="queued", actor="api")
        ids = [t.id for t in added]
    job = launch_sweep(make_session, sweep_id, settings, data_root=stored.data_root, relaunch=True)
    return LifecycleResult(sweep_id, "queued", job, None, ids)


def _extended_plan(stored: StoredSweep, patch: dict[str, Any], settings: Settings) -> tuple[SweepSpec, Plan]:
    for key in ("name", "search"):
        if key in patch:
            raise LifecycleError(422, f"patch.{key}", f"an extension cannot change the sweep's {key}")
    try:
        spec = SweepSpec(**(stored.spec.model_dump(mode="json") | patch))
        check_spec_limits(spec, settings)
        return spec, make_plan(spec, max_trials=settings.max_trials, storage_path=settings.storage_path,
                               data_root=stored.data_root)
    except ValidationError as e:
        err = e.errors()[0]
        raise LifecycleError(422, "patch." + (".".join(str(p) for p in err["loc"]) or "spec"), err["msg"]) from None
    except SpecError as e:
        raise LifecycleError(422, f"patch.{e.field}", e.reason) from None
