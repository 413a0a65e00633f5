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
def results(action: Annotated[str, typer.Argument(help="list (default) | import")] = "list",
            file: Annotated[Path | None, typer.Argument(help="import: the CSV file of result rows")] = None,
            sweep: Annotated[str | None, typer.Option(help="sweep id or name (import: the new sweep's name)")] = None,
            kind: Annotated[str, typer.Option(help="final | epoch")] = "final",
            fmt: Annotated[str, typer.Option("--format", help="table | csv | json | parquet (parquet needs --out)")] = "table",
            out: Annotated[Path | None, typer.Option(help="write to this file instead of stdout")] = None,
            where: Annotated[list[str] | None, typer.Option(
                "--where", help="FIELD=VALUE (a,b: either) or a range FIELD__gte|__gt|__lte|__lt=VALUE, repeatable")] = None,
            sort: Annotated[str | None, typer.Option(help="e.g. -robust_acc,params (-: descending)")] = None,
            limit: Annotated[int | None, typer.Option(help="rows of this page (default: all)")] = None,
            offset: Annotated[int, typer.Option(help="rows to skip")] = 0,
            aggregate: Annotated[str | None, typer.Option(help="seeds: mean and std over seeds per configuration")] = None,
            source: Annotated[str | None, typer.Option(help="import: where the rows come from (paper, file)")] = None,
            export_sweeps: Annotated[Path | None, typer.Option(
                help="write whole sweeps (spec, trials, every row) as JSON for another store")] = None,
            import_sweeps: Annotated[Path | None, typer.Option(help="load sweeps written by --export-sweeps")] = None,
            suffix: Annotated[str | None, typer.Option(help="with --import-sweeps: append to clashing names")] = None,
            database_url: DbOpt = None) -> None:
    """List or export results (one row per trial, checkpoint and attack; or per epoch) as a table, CSV, JSON or
    Parquet, with the binomial standard errors of accuracies and stability (`0.184 ± 0.017` in the table);
    `results import FILE.csv --sweep NAME` stores external results as an imported reference sweep; move whole
    sweeps between stores with --export-sweeps / --import-sweeps."""
    from db.engine import make_engine, session_factory, upgrade
    from service.exports import render_parquet, render_rows

    settings = settings_from(database_url=database_url)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    if action == "import":
        _import_csv(sessions, file, sweep, source)
        return
    if action != "list":
        fail(f"action: {action!r} is not one of list, import")
    if import_sweeps is not None or export_sweeps is not None:
        _transfer(sessions, sweep, export_sweeps, import_sweeps, suffix)
        return
    if aggregate not in (None, "seeds"):
        fail(f"aggregate: {aggregate!r} is not 'seeds'")
    bad = [w for w in where or [] if "=" not in w]
    if bad:
        fail(f"where: expected FIELD=VALUE or FIELD__gte=VALUE (e.g. eps=8/255), got {bad[0]!r}")
    pairs = [tuple(w.split("=", 1)) for w in where or []]
    if sweep is not None:
        pairs.append(("sweep", sweep))
    if fmt == "parquet" and out is None:
        fail("format: parquet is binary; give --out FILE")
    try:
        rows = _rows(sessions, pairs, kind, sort, limit, offset, aggregate)
        data = render_parquet(rows) if fmt == "parquet" else render_rows(rows, fmt)
    except (SpecError, ValueError) as e:
        fail(str(e))
    if out is not None:
        out.write_bytes(data) if isinstance(data, bytes) else out.write_text(data)
        typer.echo(f"{len(rows)} rows -> {out}", err=True)
    else:
        typer.echo(data)


def _rows(sessions: Any, pairs: list[Any], kind: str, sort: str | None, limit: int | None, offset: int,
          aggregate: str | None) -> list[dict[str, Any]]:
    """The rows the API's /results answers for the same query (standard errors appended), all pages unless
    `limit`."""
    from db.results import parse_sort, query_results
    from db.stats import aggregate_seeds, sort_rows, with_standard_errors
    from service.filters import parse_filters

    filters = parse_filters(pairs, reserved=set())
    with sessions() as s:
        rows = query_results(s, filters=filters, kind=kind, explain_empty=True)
    rows = aggregate_seeds(rows, kind=kind) if aggregate == "seeds" else with_standard_errors(rows)
    rows = sort_rows(rows, parse_sort(sort))
    return rows[offset:] if limit is None else rows[offset:offset + limit]


def _import_csv(sessions: Any, file: Path | None, name: str | None, source: str | None) -> None:
    from db.imports import ImportRejected
    from db.sweeps import SweepExists
    from service.references import import_csv

    if file is None:
        fail("file: results import needs the CSV file of rows")
    if not file.exists():
        fail(f"file: {str(file)!r} does not exist")
    if not name:
        fail("sweep: results import needs --sweep NAME (the new reference sweep)")
    try:
        with sessions.begin() as s:
            result = import_csv(s, name=name, data=file.read_bytes(), source=source or str(file.resolve()))
    except ImportRejected as e:
        where = "the header (line 1)" if e.row == 0 else f"row {e.row} (line {e.row + 1})"
        fail(f"{file.name}: {where}: {e.field}: {e.reason}; nothing was imported")
    except (SweepExists, ValueError) as e:
        fail(str(e))
    typer.echo(f"imported {result.n_final} final and {result.n_epoch} per-epoch rows as {result.n_trials} trials "
               f"into reference sweep {result.name!r} (id {result.sweep_id})", err=True)


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
           attack: Annotated[str, typer.Option(help="attack key of the rows: pgd20, cw20, autoattack, ...")] = "pgd20",
           as_json: Annotated[bool, typer.Option("--json", help="print the API's ParetoOut object")] = False,
           database_url: DbOpt = None) -> None:
    """The Pareto front of final results in (x, y): by default params minimised, robust accuracy maximised, on the
    best checkpoint's rows of `--attack`; accuracies with their standard errors, points within noise marked."""
    from db.engine import make_engine, session_factory
    from service.analysis import pareto_report
    from service.exports import render_rows
    from service.filters import parse_filters
    from service.schemas import ParetoOut

    settings = settings_from(database_url=database_url)
    directions = None if maximize is None else [v.strip().lower() in ("true", "max", "1") for v in maximize.split(",")]
    try:
        with session_factory(make_engine(settings.database_url))() as s:
            filters = parse_filters([("attack", attack), *([("sweep", sweep)] if sweep else [])], reserved=set())
            report = pareto_report(s, metrics=[x, y], maximize=directions, filters=filters)
    except (SpecError, ValueError) as e:
        fail(str(e))
    maxi = report.maximize
    if as_json:
        out = ParetoOut(metrics=[x, y], maximize=maxi, n_points=len(report.front), front=report.front,
                        front_within_noise=report.front_within_noise, note=report.note)
        typer.echo(out.model_dump_json(indent=1))
        return
    typer.echo(f"Pareto front ({x} {'max' if maxi[0] else 'min'}, {y} {'max' if maxi[1] else 'min'}) over "
               f"{report.n_rows} rows:")
    cols = list(dict.fromkeys(["sweep", "trial", "arch", x, y, "checkpoint", "attack", "within_noise"]))
    typer.echo(render_rows(report.front, "table", columns=cols))
    typer.echo(report.note)
