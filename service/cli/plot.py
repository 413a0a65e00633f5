"""`robustgrid plot KIND --sweep REF --out FILE.png|svg`: the API's plots (service.plots) written to a file; the
format follows the file's suffix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import DbOpt, app, fail, settings_from


@app.command()
def plot(kind: Annotated[str, typer.Argument(help="pareto | depth-heatmap | eps | lambda-width | curves")],
         out: Annotated[Path, typer.Option(help="the file to write: .png or .svg")],
         sweep: Annotated[str | None, typer.Option(help="sweep id or name (every kind but curves)")] = None,
         trial: Annotated[int | None, typer.Option(help="trial id (curves)")] = None,
         x: Annotated[str, typer.Option(help="Pareto x axis: params | macs")] = "params",
         metric: Annotated[str, typer.Option(help="numeric result field: Pareto / lambda-width y, heatmap colour")]
             = "robust_acc",
         attack: Annotated[str, typer.Option(help="attack key of the final rows")] = "pgd20",
         checkpoint: Annotated[str, typer.Option(help="best | last")] = "best",
         reference: Annotated[list[str] | None, typer.Option(help="Pareto: a reference sweep drawn beside, "
                                                                  "repeatable")] = None,
         database_url: DbOpt = None) -> None:  # fmt: skip
    """Draw a plot of stored results into a PNG or SVG file."""
    from db.engine import make_engine, session_factory, upgrade
    from db.sweeps import NotFound
    from service.plots import KINDS, MEDIA_TYPES, PlotOptions, render, sweep_figure, trial_figure

    fmt = out.suffix.lower().lstrip(".")
    if fmt not in MEDIA_TYPES:
        fail(f"out: the file must end in .png or .svg, got {out.name!r}")
    if kind not in KINDS:
        fail(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    if (kind == "curves") != (trial is not None) or (kind != "curves" and sweep is None):
        fail("trial: curves needs --trial ID" if kind == "curves" else f"sweep: {kind} needs --sweep ID|NAME")
    engine = make_engine(settings_from(database_url=database_url).database_url)
    upgrade(engine)
    try:
        with session_factory(engine)() as session:
            if kind == "curves":
                assert trial is not None
                fig = trial_figure(session, kind=kind, trial_id=trial)
            else:
                options = PlotOptions(x=x, metric=metric, attack=attack, checkpoint=checkpoint,
                                      reference=tuple(reference or ()))
                assert sweep is not None
                fig = sweep_figure(session, kind=kind, sweep_ref=sweep, options=options)
            body = render(fig, fmt)
    except (NotFound, ValueError) as e:
        fail(str(e))
    finally:
        engine.dispose()
    out.write_bytes(body)
    typer.echo(f"{kind} -> {out} ({len(body):,} bytes)", err=True)
