"""`robustgrid cancel | resume | extend`: a sweep's life after submission, through the API's code path
(service.submission). Each prints the outcome as one JSON object; bad input ends with `error: FIELD: reason` and
exit code 2 (404 and 409 too), nothing written."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from service.cli.common import DbOpt, SetOpt, app, fail, parse_sets, settings_from, sweep_sessions
from service.cli.sweeps import wait_for
from service.settings import Settings

SweepArg = Annotated[str, typer.Argument(help="sweep id or name")]
WaitOpt = Annotated[bool, typer.Option(help="wait for the sweep and show progress")]


def _run(settings: Settings, ref: str, action: Any, *args: Any) -> int:
    from db.states import ForbiddenTransition
    from service.submission import LaunchFailed, LifecycleError, RayUnavailable

    sessions, sweep_id = sweep_sessions(settings, ref)
    try:
        result = action(sessions, sweep_id, *args, settings) if args else action(sessions, sweep_id, settings)
    except LifecycleError as e:
        fail(str(e))
    except (RayUnavailable, LaunchFailed) as e:  # nothing changed (RayUnavailable), or the sweep is now failed
        fail(f"ray: {e}")
    except ForbiddenTransition as e:  # the sweep changed state under the request
        fail(f"status: {e}")
    typer.echo(json.dumps(asdict(result)))
    return sweep_id


@app.command()
def cancel(sweep: SweepArg, database_url: DbOpt = None) -> None:
    """Cancel a sweep: stop its Ray job; its queued and running trials end cancelled; results stay."""
    from service.submission import cancel_sweep

    _run(settings_from(database_url=database_url), sweep, cancel_sweep)


@app.command()
def resume(sweep: SweepArg, database_url: DbOpt = None, wait: WaitOpt = False) -> None:
    """Resume a sweep whose driver died or was cancelled (Tuner.restore; finished trials never run again)."""
    from service.submission import resume_sweep

    settings = settings_from(database_url=database_url)
    sweep_id = _run(settings, sweep, resume_sweep)
    if wait:
        wait_for(settings, sweep_id)


@app.command()
def extend(sweep: SweepArg, set_: SetOpt = None,
           patch: Annotated[Path | None, typer.Option(help="a JSON file of SweepSpec fields to change")] = None,
           database_url: DbOpt = None, wait: WaitOpt = False) -> None:
    """Extend a finished grid sweep (e.g. --set 'seeds=[0,1]'): only configurations it lacks are added and run."""
    from service.submission import extend_sweep

    changes: dict[str, Any] = {}
    if patch is not None:
        if not patch.exists():
            fail(f"patch: file {str(patch)!r} does not exist")
        try:
            changes = json.loads(patch.read_text())
        except json.JSONDecodeError as e:
            fail(f"patch: not valid JSON ({e})")
    changes |= parse_sets(set_)
    if not changes:
        fail("patch: give the spec fields to change with --set KEY=VALUE or --patch FILE")
    settings = settings_from(database_url=database_url)
    sweep_id = _run(settings, sweep, extend_sweep, changes)
    if wait:
        wait_for(settings, sweep_id)
