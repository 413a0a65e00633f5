"""Planning commands of `robustgrid`: `plan` (expand a preset or spec into its trials; nothing runs), `calibrate`
(measure this device's throughput for the plan's cost model; torch in-process, imported lazily) and `war-zeta`
(WAR's zeta from a finished thin-network tuning sweep, for `--preset wu2021-war --set phase=war`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from search_spaces.spec import SpecError
from service.cli.common import DataRootOpt, PresetOpt, SetOpt, SpecOpt, app, build_request, fail, settings_from


@app.command()
def plan(preset: PresetOpt = None, spec: SpecOpt = None, set_: SetOpt = None,
         as_json: Annotated[bool, typer.Option("--json", help="one JSON object per trial")] = False,
         list_: Annotated[bool, typer.Option("--list", help="list the presets")] = False,
         data_root: DataRootOpt = None) -> None:
    """Expand a preset or spec into its trials with parameters, MACs and estimated cost; nothing runs."""
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


def _ints(text: str | None, field: str, kind: type = int) -> tuple[Any, ...] | None:
    if text is None:
        return None
    try:
        return tuple(kind(v) for v in text.split(","))
    except ValueError:
        fail(f"{field}: expected comma-separated numbers such as 1,1,1, got {text!r}")
    raise AssertionError


@app.command()
def calibrate(
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available)")] = None,
    depths: Annotated[str | None, typer.Option(help="probe WRN depths, e.g. 2,2,2 (default per device)")] = None,
    widths: Annotated[str | None, typer.Option(help="probe WRN widths, e.g. 8,8,8 (default per device)")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="probe batch size")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="timed training steps per epoch")] = None,
    attack_steps: Annotated[int | None, typer.Option(min=1, help="PGD steps of the probe's SAT")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="timed epochs (the median is kept)")] = 3,
    storage_path: Annotated[str | None, typer.Option(help="where calibration.json goes (ROBUSTGRID_STORAGE_PATH)")] = None,
    save: Annotated[bool, typer.Option(help="store the calibration for `robustgrid plan`")] = True,
) -> None:
    """Time a few real training steps of a small WRN on this device; store its MACs/s for `plan`'s cost estimates."""
    from search_spaces.plan import save_calibration
    from service.settings import Settings
    from workers.calibrate import calibrate as run_calibration
    from workers.final_eval import pick_device

    probe = {"depths": _ints(depths, "depths"), "widths": _ints(widths, "widths", float), "batch_size": batch_size,
             "steps": steps, "attack_steps": attack_steps}
    try:
        cal = run_calibration(pick_device(device), repeats=repeats, **probe)
    except ValueError as e:
        fail(str(e))
    typer.echo(f"{cal.device}: {cal.macs_per_second / 1e9:,.2f} GMAC/s ({cal.probe['arch']}, batch "
               f"{cal.probe['batch_size']}, SAT PGD-{cal.probe['attack_steps']}, {cal.probe['precision']}, "
               f"{cal.probe['seconds_per_step']:.3f} s/step)", err=True)
    if save:
        root = storage_path or Settings().storage_path
        try:
            path = save_calibration(cal, root)
        except SpecError as e:
            fail(str(e))
        typer.echo(f"saved to {path}", err=True)
    typer.echo(cal.to_json())


@app.command("war-zeta")
def war_zeta(
    sweep: Annotated[str, typer.Argument(help="the finished wu2021-war tuning sweep (id or name)")],
    attack: Annotated[str, typer.Option(help="the attack key whose robust accuracy picks the trial")] = "pgd20",
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (ROBUSTGRID_DATABASE_URL)")] = None,
) -> None:
    """WAR's zeta (natural risk / robust regulariser at the last epoch of the tuning sweep's most robust trial)."""
    from db.engine import make_engine, session_factory
    from db.results import query_results
    from search_spaces.presets.wu2021 import zeta_from_tuning
    from service.settings import Settings

    settings = Settings(**({"database_url": database_url} if database_url else {}))
    with session_factory(make_engine(settings.database_url))() as s:
        final = query_results(s, filters={"sweep": sweep}, kind="final")
        epochs = query_results(s, filters={"sweep": sweep}, kind="epoch")
    try:
        zeta, trial = zeta_from_tuning(final, epochs, attack=attack)
    except SpecError as e:
        fail(str(e))
    typer.echo(f"zeta from trial {trial} of sweep {sweep}; next: robustgrid submit --preset wu2021-war "
               f"--set phase=war --set zeta={zeta:.6g}", err=True)
    typer.echo(json.dumps({"zeta": zeta, "trial": trial}))
