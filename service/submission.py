"""From a sweep request to a stored, launched sweep: resolve, validate, plan, write in one transaction, launch.

Shared by the API route and the CLI so both take the same path. Nothing here imports torch or ray directly:
planning goes through search_spaces, launching through service.launcher.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db.sweeps import Sweep, create_sweep, set_sweep_job, set_sweep_status
from search_spaces.catalog import DISK_DATASETS
from search_spaces.plan import Plan, make_plan
from search_spaces.presets import resolve
from search_spaces.provenance import code_version
from search_spaces.spec import SpecError, SweepSpec
from service.schemas import SweepRequest
from service.settings import Settings

log = logging.getLogger(__name__)


def data_root_of(req: SweepRequest, settings: Settings) -> str | None:
    """The request's data root (absolute: trials run in other working directories), else the service's."""
    root = req.data_root or settings.data_root
    return None if root is None else str(Path(root).expanduser().resolve())


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


def plan_request(req: SweepRequest, settings: Settings) -> tuple[SweepSpec, Plan]:
    spec = resolve_spec(req)
    check_data_root(spec, data_root_of(req, settings))
    return spec, make_plan(spec, max_trials=settings.max_trials)


def _trial_rows(plan: Plan) -> list[dict[str, object]]:
    rows = []
    for i, t in enumerate(plan.trials):
        row = t.row()
        row.pop("est_gpu_seconds")
        row.update(idx=i, config=t.config.model_dump(mode="json"), config_hash=t.config_hash)
        rows.append(row)
    return rows


def store_sweep(session: Session, req: SweepRequest, settings: Settings) -> tuple[Sweep, Plan]:
    """Validate and plan the request, then write the sweep and all its trials in one transaction."""
    spec, plan = plan_request(req, settings)
    name = spec.name or f"{req.preset or 'sweep'}-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10_000:04d}"
    stored = spec.model_dump(mode="json") | {"name": name}
    with session.begin():
        sweep = create_sweep(session, name=name, spec=stored | {"data_root": data_root_of(req, settings)},
                             trials=_trial_rows(plan), code_version=code_version())
    return sweep, plan


def launch_sweep(make_session: sessionmaker[Session], sweep_id: int, settings: Settings, *, data_root: str | None) -> str:
    """Submit the driver as a Ray job. A failed submission marks the sweep failed and re-raises."""
    from service import launcher

    try:
        cluster = launcher.ensure_ray_head(settings)
        env = {"ROBUSTGRID_DATABASE_URL": settings.database_url, "ROBUSTGRID_STORAGE_PATH": settings.storage_path}
        if data_root:
            env["ROBUSTGRID_DATA_ROOT"] = data_root
        job_id = launcher.submit_sweep_job(settings, cluster, sweep_id=sweep_id, env=env)
    except Exception:
        with make_session.begin() as s:
            set_sweep_status(s, sweep_id=sweep_id, status="failed")
        raise
    with make_session.begin() as s:
        set_sweep_job(s, sweep_id=sweep_id, ray_job_id=job_id, dashboard_url=launcher.dashboard_url(cluster))
    log.info("sweep %d submitted as Ray job %s", sweep_id, job_id)
    return job_id
