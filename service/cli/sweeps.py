"""`robustgrid submit | status`: store a sweep and launch it (the API's code path, service.submission), follow it
(`wait_for`, also used by `demo`, `resume --wait` and `extend --wait`), list sweeps with their trial counts."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from search_spaces.spec import SpecError
from service.cli.common import DataRootOpt, DbOpt, PresetOpt, SetOpt, SpecOpt, app, build_request, fail, settings_from
from service.schemas import SweepRequest
from service.settings import Settings

if TYPE_CHECKING:
    from service.cli.progress import SweepProgress


def submit_request(req: SweepRequest, settings: Settings) -> int:
    from db.engine import make_engine, session_factory, upgrade
    from db.sweeps import SweepExists
    from service.submission import LaunchFailed, data_root_of, launch_sweep, store_sweep

    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    try:
        with sessions() as s:
            sweep, p = store_sweep(s, req, settings)
            sweep_id = sweep.id
    except SpecError as e:
        fail(str(e))
    except SweepExists as e:
        fail(f"name: {e}")
    totals = p.totals()
    calibrated = "" if totals["calibrated"] else " (uncalibrated: `robustgrid calibrate` measures this device)"
    typer.echo(f"sweep {sweep_id}: {totals['n_trials']} trials, est. {totals['est_device_hours']} "
               f"{totals['cost_unit']}{calibrated}")
    try:
        launch_sweep(sessions, sweep_id, settings, data_root=data_root_of(req, settings))
    except LaunchFailed as e:  # stored, now failed with the reason; `robustgrid resume` retries
        fail(f"ray: {e}")
    return sweep_id


@app.command()
def submit(preset: PresetOpt = None, spec: SpecOpt = None, set_: SetOpt = None,
           name: Annotated[str | None, typer.Option(help="sweep name")] = None,
           data_root: DataRootOpt = None, database_url: DbOpt = None,
           wait: Annotated[bool, typer.Option(help="wait for the sweep and show progress")] = False) -> None:
    """Store a sweep and launch it as a Ray job (the service's path)."""
    settings = settings_from(data_root=data_root, database_url=database_url)
    sweep_id = submit_request(build_request(preset, spec, set_, name=name, data_root=data_root), settings)
    if wait:
        wait_for(settings, sweep_id)


def wait_for(settings: Settings, sweep_id: int, poll_s: float = 2.0) -> str:
    """Poll the store until every trial is terminal, drawing live progress per trial and epoch with an ETA
    (service.cli.progress). Asks the Ray head about the driver job without ever starting one (`existing_cluster`); a
    head that cannot be asked ends the wait; a sweep being cancelled ends it once its job has stopped."""
    from db.engine import make_engine, session_factory
    from service.cli.progress import SweepProgress

    sessions = session_factory(make_engine(settings.database_url))
    with SweepProgress(sweep_id) as bars:
        return _poll(settings, sessions, sweep_id, bars, poll_s)


def _poll(settings: Settings, sessions: Any, sweep_id: int, bars: SweepProgress, poll_s: float) -> str:
    from db.progress import trial_progress
    from db.sweeps import get_sweep
    from service import launcher
    from service.submission import JobNotFound, RayUnavailable, existing_cluster

    while True:
        with sessions() as s:
            sweep = get_sweep(s, sweep_id=sweep_id)
            assert sweep is not None
            status, job = sweep.status, sweep.ray_job_id
            bars.update(status, trial_progress(s, sweep_id=sweep_id))
        if status in ("completed", "failed", "cancelled"):
            return status
        if job:
            try:
                state = launcher.job_status(settings, existing_cluster(settings), job)
            except RayUnavailable as e:
                fail(f"ray: {e}")
            except JobNotFound:
                fail(f"sweep {sweep_id}: the Ray head does not know its driver job {job} (restarted?): "
                     f"`robustgrid resume {sweep_id}` continues it")
            if state in ("FAILED", "STOPPED", "SUCCEEDED"):  # a finished driver leaves every trial terminal
                with sessions() as s:
                    sweep = get_sweep(s, sweep_id=sweep_id)
                    if sweep is not None and sweep.status in ("completed", "failed", "cancelled"):
                        continue
                    if sweep is not None and sweep.status == "cancelling":  # the cancel stopped it
                        return "cancelling"
                logs = launcher.job_logs(settings, existing_cluster(settings), job)
                typer.echo(logs[-3000:], err=True)
                fail(f"sweep {sweep_id}: the driver job ended {state}")
        time.sleep(poll_s)


@app.command()
def status(sweep: Annotated[str | None, typer.Argument(help="sweep id or name; all sweeps when omitted")] = None,
           database_url: DbOpt = None) -> None:
    """Sweeps and their trial counts per status."""
    from db.engine import make_engine, session_factory, upgrade
    from db.sweeps import get_sweep_by_name_or_id, list_sweeps, trial_status_counts

    settings = settings_from(database_url=database_url)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with session_factory(engine)() as s:
        sweeps = list_sweeps(s) if sweep is None else [get_sweep_by_name_or_id(s, ref=sweep)]
        if sweeps == [None]:
            fail(f"sweep: {sweep!r} not found")
        for sw in sweeps:
            counts = trial_status_counts(s, sweep_id=sw.id)
            typer.echo(f"{sw.id:4d} {sw.name:40s} {sw.status:10s} {json.dumps(counts)} {sw.dashboard_url or ''}")
