"""`robustgrid results | pareto`: final or per-epoch result rows (table, CSV, JSON; filters), whole sweeps moved
between stores (--export-sweeps / --import-sweeps), and the Pareto front of two metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from search_spaces.spec import SpecError
from service.cli.common import DbOpt, app, fail, settings_from


@app.command()
def results(sweep: Annotated[str | None, typer.Option(help="sweep id or name")] = None,
            kind: Annotated[str, typer.Option(help="final | epoch")] = "final",
            fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
            out: Annotated[Path | None, typer.Option(help="write to this file instead of stdout")] = None,
            where: Annotated[list[str] | None, typer.Option("--where", help="FIELD=VALUE filter, repeatable")] = None,
            export_sweeps: Annotated[Path | None, typer.Option(
                help="write whole sweeps (spec, trials, every row) as JSON for another store")] = None,
            import_sweeps: Annotated[Path | None, typer.Option(help="load sweeps written by --export-sweeps")] = None,
            suffix: Annotated[str | None, typer.Option(help="with --import-sweeps: append to clashing names")] = None,
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
           sweep: Annotated[str | None, typer.Option(help="sweep id or name; all sweeps when omitted")] = None,
           maximize: Annotated[str | None, typer.Option(help="e.g. false,true")] = None,
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
