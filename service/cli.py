"""The `robustgrid` command line: the same operations as the API, through the same code paths.

Bad input ends with one line `error: FIELD: reason` and exit code 2; nothing is written.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError

from search_spaces.spec import SpecError, SweepSpec
from service.schemas import SweepRequest
from service.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

PresetOpt = Annotated[Optional[str], typer.Option("--preset", "-p", help="a preset name (robustgrid plan --list)")]
SpecOpt = Annotated[Optional[Path], typer.Option("--spec", help="a sweep spec as a JSON file")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override KEY=VALUE (JSON values), repeatable")]
DataRootOpt = Annotated[Optional[str], typer.Option("--data-root", help="where datasets live (ROBUSTGRID_DATA_ROOT)")]
DbOpt = Annotated[Optional[str], typer.Option("--database-url", help="SQLAlchemy URL (ROBUSTGRID_DATABASE_URL)")]


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def settings_from(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def parse_sets(sets: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in sets or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            fail(f"--set: expected KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key.startswith("training."):
            out.setdefault("training", {})[key.removeprefix("training.")] = value
        else:
            out[key] = value
    return out


def build_request(preset: str | None, spec: Path | None, sets: list[str] | None, name: str | None = None,
                  data_root: str | None = None) -> SweepRequest:
    overrides = parse_sets(sets)
    try:
        if spec is not None:
            if not spec.exists():
                fail(f"spec: file {str(spec)!r} does not exist")
            data = json.loads(spec.read_text()) | overrides
            return SweepRequest(spec=SweepSpec(**data), name=name, data_root=data_root)
        return SweepRequest(preset=preset, overrides=overrides, name=name, data_root=data_root)
    except ValidationError as e:
        err = e.errors()[0]
        fail(f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}")
    except json.JSONDecodeError as e:
        fail(f"spec: not valid JSON ({e})")
    raise AssertionError


@app.command()
def plan(preset: PresetOpt = None, spec: SpecOpt = None, set_: SetOpt = None,
         as_json: Annotated[bool, typer.Option("--json", help="one JSON object per trial")] = False,
         list_: Annotated[bool, typer.Option("--list", help="list the presets")] = False,
         data_root: DataRootOpt = None) -> None:
    """Expand a preset or spec into its trials with parameters, FLOPs and estimated cost; nothing runs."""
    from search_spaces.presets import list_presets
    from service.submission import plan_request

    if list_:
        for p in list_presets():
            typer.echo(f"{p.name:32s} {p.description}")
        return
    req = build_request(preset, spec, set_, data_root=data_root)
    try:
        _, p = plan_request(req, settings_from(data_root=data_root))
    except SpecError as e:
        fail(str(e))
    if as_json:
        for t in p.trials:
            typer.echo(json.dumps(t.row()))
        return
    import pandas as pd

    typer.echo(pd.DataFrame([t.row() for t in p.trials]).to_string(index=False))
    typer.echo(json.dumps(p.totals()))


def _submit(req: SweepRequest, settings: Settings) -> int:
    from db.engine import make_engine, session_factory, upgrade
    from service.submission import data_root_of, launch_sweep, store_sweep

    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    try:
        with sessions() as s:
            sweep, p = store_sweep(s, req, settings)
            sweep_id = sweep.id
    except SpecError as e:
        fail(str(e))
    typer.echo(f"sweep {sweep_id}: {p.totals()['n_trials']} trials, est. {p.totals()['est_gpu_hours']} GPU-hours")
    launch_sweep(sessions, sweep_id, settings, data_root=data_root_of(req, settings))
    return sweep_id


@app.command()
def submit(preset: PresetOpt = None, spec: SpecOpt = None, set_: SetOpt = None,
           name: Annotated[Optional[str], typer.Option(help="sweep name")] = None,
           data_root: DataRootOpt = None, database_url: DbOpt = None,
           wait: Annotated[bool, typer.Option(help="wait for the sweep and show progress")] = False) -> None:
    """Store a sweep and launch it as a Ray job (the service's path)."""
    settings = settings_from(data_root=data_root, database_url=database_url)
    sweep_id = _submit(build_request(preset, spec, set_, name=name, data_root=data_root), settings)
    if wait:
        wait_for(settings, sweep_id)


def wait_for(settings: Settings, sweep_id: int, poll_s: float = 2.0) -> str:
    """Poll the store until every trial is terminal; print progress whenever it changes."""
    from db.engine import make_engine, session_factory
    from db.sweeps import get_sweep, trial_status_counts
    from service import launcher

    sessions = session_factory(make_engine(settings.database_url))
    last, t0 = None, time.monotonic()
    while True:
        with sessions() as s:
            sweep = get_sweep(s, sweep_id=sweep_id)
            assert sweep is not None
            counts, status, job = trial_status_counts(s, sweep_id=sweep_id), sweep.status, sweep.ray_job_id
        line = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        if line != last:
            typer.echo(f"[{time.monotonic() - t0:6.0f} s] sweep {sweep_id} {status}: {line}", err=True)
            last = line
        if status in ("completed", "failed", "cancelled"):
            return status
        if job:
            state = launcher.job_status(settings, launcher.ensure_ray_head(settings), job)
            if state in ("FAILED", "STOPPED", "SUCCEEDED"):  # a finished driver leaves every trial terminal
                with sessions() as s:
                    sweep = get_sweep(s, sweep_id=sweep_id)
                    if sweep is not None and sweep.status in ("completed", "failed", "cancelled"):
                        continue
                logs = launcher.job_logs(settings, launcher.ensure_ray_head(settings), job)
                typer.echo(logs[-3000:], err=True)
                fail(f"sweep {sweep_id}: the driver job ended {state}")
        time.sleep(poll_s)


@app.command()
def status(sweep: Annotated[Optional[str], typer.Argument(help="sweep id or name; all sweeps when omitted")] = None,
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


@app.command()
def results(sweep: Annotated[Optional[str], typer.Option(help="sweep id or name")] = None,
            kind: Annotated[str, typer.Option(help="final | epoch")] = "final",
            fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
            out: Annotated[Optional[Path], typer.Option(help="write to this file instead of stdout")] = None,
            where: Annotated[Optional[list[str]], typer.Option("--where", help="FIELD=VALUE filter, repeatable")] = None,
            export_sweeps: Annotated[Optional[Path], typer.Option(
                help="write whole sweeps (spec, trials, every row) as JSON for another store")] = None,
            import_sweeps: Annotated[Optional[Path], typer.Option(help="load sweeps written by --export-sweeps")] = None,
            suffix: Annotated[Optional[str], typer.Option(help="with --import-sweeps: append to clashing names")] = None,
            database_url: DbOpt = None) -> None:
    """List or export results (one row per trial, checkpoint and attack; or per epoch) as a table, CSV or JSON;
    move whole sweeps between stores with --export-sweeps / --import-sweeps."""
    from db.engine import make_engine, session_factory, upgrade
    from db.results import query_results
    from service.exports import render_rows
    from service.filters import parse_filters

    settings = settings_from(database_url=database_url)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    if import_sweeps is not None or export_sweeps is not None:
        _transfer(sessions, sweep, export_sweeps, import_sweeps, suffix)
        return
    pairs = [tuple(w.split("=", 1)) for w in where or [] if "=" in w]
    if sweep is not None:
        pairs.append(("sweep", sweep))
    try:
        filters = parse_filters(pairs, reserved=set())
        with sessions() as s:
            rows = query_results(s, filters=filters, kind=kind)
        text = render_rows(rows, fmt)
    except (SpecError, ValueError) as e:
        fail(str(e))
    if out is not None:
        out.write_text(text)
        typer.echo(f"{len(rows)} rows -> {out}", err=True)
    else:
        typer.echo(text)


def _transfer(sessions: Any, sweep: str | None, export_to: Path | None, import_from: Path | None,
              suffix: str | None) -> None:
    from db.sweeps import get_sweep_by_name_or_id, list_sweeps
    from db.transfer import export_sweeps, import_sweeps

    if export_to is not None:
        with sessions() as s:
            found = list_sweeps(s) if sweep is None else [get_sweep_by_name_or_id(s, ref=sweep)]
            if None in found:
                fail(f"sweep: {sweep!r} not found")
            dump = export_sweeps(s, sweep_ids=[sw.id for sw in found])
        export_to.write_text(json.dumps(dump, default=str))
        typer.echo(f"{len(dump['sweeps'])} sweep(s) -> {export_to}", err=True)
    if import_from is not None:
        if not import_from.exists():
            fail(f"import-sweeps: file {str(import_from)!r} does not exist")
        try:
            with sessions.begin() as s:
                names = [sw.name for sw in import_sweeps(s, dump=json.loads(import_from.read_text()), suffix=suffix)]
        except (ValueError, json.JSONDecodeError) as e:
            fail(str(e))
        typer.echo(f"imported {len(names)} sweep(s): {', '.join(names)}", err=True)


@app.command()
def pareto(x: str = "params", y: str = "robust_acc",
           sweep: Annotated[Optional[str], typer.Option(help="sweep id or name; all sweeps when omitted")] = None,
           maximize: Annotated[Optional[str], typer.Option(help="e.g. false,true")] = None,
           database_url: DbOpt = None) -> None:
    """The Pareto front of final results in (x, y): by default params minimised, robust accuracy maximised."""
    from db.engine import make_engine, session_factory
    from service.analysis import pareto_front
    from service.exports import render_rows

    settings = settings_from(database_url=database_url)
    directions = None if maximize is None else [v.strip().lower() in ("true", "max", "1") for v in maximize.split(",")]
    try:
        with session_factory(make_engine(settings.database_url))() as s:
            maxi, front = pareto_front(s, metrics=[x, y], maximize=directions,
                                       filters={"sweep": sweep} if sweep else {})
    except (SpecError, ValueError) as e:
        fail(str(e))
    typer.echo(f"Pareto front ({x} {'max' if maxi[0] else 'min'}, {y} {'max' if maxi[1] else 'min'}):")
    typer.echo(render_rows(front, "table", columns=["sweep", "trial", "arch", x, y, "checkpoint", "attack"]))


@app.command()
def train(preset: PresetOpt = None, spec: SpecOpt = None, set_: SetOpt = None,
          trial: Annotated[int, typer.Option(help="which trial of the expanded plan")] = 0,
          data_root: DataRootOpt = None,
          device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available)")] = None,
          out: Annotated[Optional[Path], typer.Option(help="write the final rows as JSON here")] = None) -> None:
    """Train and evaluate one trial without Ray (same training function as the Ray trainable)."""
    import logging

    from service.submission import plan_request
    from workers.final_eval import pick_device, train_and_evaluate

    logging.basicConfig(level=logging.WARNING)
    req = build_request(preset, spec, set_, data_root=data_root)
    try:
        _, p = plan_request(req, settings_from(data_root=data_root))
    except SpecError as e:
        fail(str(e))
    if not 0 <= trial < len(p.trials):
        fail(f"trial: {trial} is outside the plan's 0..{len(p.trials) - 1}")
    cfg = p.trials[trial].config
    typer.echo(f"training {cfg.arch} ({p.trials[trial].params:,} params) {cfg.method} eps={cfg.eps:.4f}", err=True)

    def on_epoch(m: dict[str, Any], _: Any) -> None:
        typer.echo(f"epoch {m['epoch']}/{cfg.epochs} clean_acc {m.get('clean_acc', float('nan')):.3f} "
                   f"robust_acc {m.get('robust_acc', float('nan')):.3f} loss {m['adv_loss_train']:.3f} "
                   f"{m['seconds']:.1f} s", err=True)

    _, rows = train_and_evaluate(cfg, device=pick_device(device), data_root=data_root or settings_from().data_root,
                                 on_epoch=on_epoch)
    text = json.dumps(rows, indent=1)
    if out is not None:
        out.write_text(text)
    typer.echo(text)


@app.command()
def serve(host: Optional[str] = None, port: Optional[int] = None) -> None:
    """Run the API (uvicorn)."""
    import uvicorn

    from service.app import create_app

    settings = settings_from(api_host=host, api_port=port)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)


@app.command()
def demo(data_root: DataRootOpt = None, database_url: DbOpt = None,
         stop_ray: Annotated[bool, typer.Option(help="stop the local Ray head at the end")] = False) -> None:
    """The main job: embedded Ray + SQLite, the `demo` preset end to end, then the table and the Pareto front."""
    from service import launcher
    from service.exports import render_rows

    t0 = time.monotonic()
    settings = settings_from(data_root=data_root, database_url=database_url)
    root, dataset = settings.data_root, "cifar10"
    if root and (Path(root) / "train").is_dir() and (Path(root) / "test").is_dir():
        dataset = "cifar10-jpeg"  # an ImageFolder tree such as ../shared/data's archive
    elif root is None:
        root = str(Path.home() / ".cache" / "robustgrid" / "data")  # torchvision downloads CIFAR-10 here
        Path(root).mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"data_root": root})
    typer.echo(f"demo: dataset {dataset} at {root}; database {settings.database_url}", err=True)
    req = build_request("demo", None, [f"dataset={json.dumps(dataset)}"], data_root=root)
    sweep_id = _submit(req, settings)
    cluster = launcher.ensure_ray_head(settings)
    typer.echo(f"Ray dashboard: {launcher.dashboard_url(cluster)}", err=True)
    state = wait_for(settings, sweep_id)

    from db.engine import make_engine, session_factory
    from db.results import query_results
    from service.analysis import pareto_front

    from db.sweeps import list_trials

    with session_factory(make_engine(settings.database_url))() as s:
        rows = query_results(s, filters={"sweep": sweep_id}, kind="final")
        _, front = pareto_front(s, metrics=["params", "robust_acc"], maximize=None, filters={"sweep": sweep_id})
        errors = [f"trial {t.id} {t.arch}: {t.error}" for t in list_trials(s, sweep_id=sweep_id) if t.status == "failed"]
    if errors:
        typer.echo("\n".join(errors), err=True)
        fail(f"demo: {len(errors)} trial(s) of sweep {sweep_id} failed")
    typer.echo(f"\nResults of sweep {sweep_id} ({state}):")
    typer.echo(render_rows(rows, "table"))
    typer.echo("\nPareto front (params min, robust_acc max, best checkpoint):")
    typer.echo(render_rows(front, "table", columns=["trial", "arch", "params", "robust_acc", "clean_acc", "stability"]))
    typer.echo(f"\nRay dashboard: {launcher.dashboard_url(cluster)}")
    typer.echo(f"demo wall time: {time.monotonic() - t0:.0f} s")
    if stop_ray:
        launcher.stop_local_head(settings)


import service.cli_plan  # noqa: F401,E402
import service.cli_science  # noqa: F401,E402
import service.cli_lifecycle  # noqa: F401,E402
import service.cli_bench  # noqa: F401,E402


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="robustgrid")


if __name__ == "__main__":  # pragma: no cover
    # `python -m service.cli` runs this file as __main__, a second copy of the module; the command modules above
    # registered on the canonical service.cli's app, so run that one.
    from service.cli import app as canonical_app

    sys.exit(canonical_app())
