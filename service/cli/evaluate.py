"""`robustgrid evaluate`: re-attack a sweep's stored checkpoints (post-hoc evaluation, service.evaluation), by
default on the Pareto front of params vs PGD-20 robust accuracy widened by two standard errors. Submits a Ray job
(the API's code path), or with `--local` runs the evaluations in this process (no Ray; CPU or this machine's GPU).
Prints the plan (and the job id) as one JSON object; with --local, then one line per row written."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from service.cli.common import DataRootOpt, DbOpt, app, fail, settings_from, sweep_sessions


def _numbers(text: str | None, field: str, kind: type) -> list | None:
    """'1,2,3' -> [1, 2, 3]; eps also as fractions ('8/255')."""
    if text is None:
        return None
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            num, _, den = part.partition("/")
            out.append(kind(num) if not den else float(num) / float(den))
        except (ValueError, ZeroDivisionError):
            fail(f"{field}: {part!r} is not a number")
    return out


@app.command()
def evaluate(
    sweep: Annotated[str, typer.Option("--sweep", help="sweep id or name")],
    attack: Annotated[str, typer.Option(help="autoattack | apgd-ce | apgd-t | fab | square | fgsm | pgd<N> | cw<N>")]
    = "autoattack",
    front: Annotated[bool, typer.Option("--front", help="the widened Pareto front (the default without --trials)")]
    = False,
    trials: Annotated[str | None, typer.Option(help="comma-separated trial ids instead of the front")] = None,
    eps: Annotated[str | None, typer.Option(help="front: only these radii, e.g. 8/255,4/255")] = None,
    checkpoints: Annotated[str, typer.Option(help="best,last | best | last")] = "best,last",
    force: Annotated[bool, typer.Option(help="re-run evaluations whose row exists")] = False,
    local: Annotated[bool, typer.Option(help="run in this process instead of a Ray job")] = False,
    storage_path: Annotated[str | None, typer.Option(help="Ray storage path (ROBUSTGRID_STORAGE_PATH)")] = None,
    database_url: DbOpt = None,
    data_root: DataRootOpt = None,
) -> None:
    """Re-attack stored best/last checkpoints; rows land under the attack's key (results, CSV, pareto --attack)."""
    from db.sweeps import get_sweep
    from service.evaluation import EvaluationError, evaluate_sweep, plan_evaluation

    if front and trials is not None:
        fail("trials: give --front or --trials, not both")
    settings = settings_from(database_url=database_url, storage_path=storage_path, data_root=data_root)
    ids, radii = _numbers(trials, "trials", int), _numbers(eps, "eps", float)
    cps = tuple(c.strip() for c in checkpoints.split(",") if c.strip())
    sessions, sweep_id = sweep_sessions(settings, sweep)
    with sessions() as s:
        found = get_sweep(s, sweep_id=sweep_id)
        try:
            plan = plan_evaluation(s, sweep=found, attack=attack, trials=ids, checkpoints=cps, eps=radii) \
                if local else None
        except EvaluationError as e:
            fail(str(e))
    if not local:
        from service.launcher import RayUnavailable

        try:
            result = evaluate_sweep(sessions, settings, sweep_id=sweep_id, attack=attack, trials=ids,
                                    checkpoints=cps, eps=radii, force=force)
        except EvaluationError as e:
            fail(str(e))
        except RayUnavailable as e:
            fail(f"ray: {e}")
        typer.echo(json.dumps(result.to_dict()))
        return
    _run_local(sessions, settings, plan, force)


def _run_local(sessions, settings, plan, force: bool) -> None:  # type: ignore[no-untyped-def]
    from workers.posthoc import plan_work, run_local

    typer.echo(json.dumps({**plan.__dict__, "job_id": None}))
    with sessions() as s:
        work, notes = plan_work(s, trial_ids=plan.trials, attack=plan.attack, checkpoints=plan.checkpoints,
                                storage_path=settings.storage_path, force=force)
    for note in notes:
        typer.echo(f"skipped: {note}", err=True)
    for w in work:
        (row,) = run_local(sessions, [w], data_root=plan.data_root or settings.data_root)
        typer.echo(f"trial {w.trial_id} {w.arch} {row.checkpoint} {row.attack}: clean {row.clean_acc:.4f} "
                   f"robust {row.robust_acc:.4f} ({row.n_robust}/{row.n_total}) {row.device_seconds:.1f} s")
