"""Science commands of `robustgrid`: `epsilon-star` (eps* of a finished sweep, science.md Study C)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from search_spaces.spec import SpecError
from service.cli.common import DbOpt, app, fail, settings_from

PX = 255  # eps is shown in 1/255 pixel units


def _px(v: float | None) -> str:
    return "-" if v is None else f"{v * PX:.3g}/255"


def _describe(g: dict[str, Any]) -> list[str]:
    head = (f"{g['sweep']}: {g['arch']} {g['method']} lam={g['lam']:g} {g['norm']} {g['dataset']} "
            f"n_train={g['n_train']} seed={g['seed']}  clean trial {g['clean_trial']}  "
            f"R0={'-' if g['r0'] is None else format(g['r0'], '.4f')}"
            + ("" if g["r0"] is None else f" (clean_loss_{g['r0_split']}, epoch {g['r0_epoch']})"))
    lines = [head, f"  eps* = {_px(g['eps_star'])}" + (f" (between {_px(g['lower'])} and {_px(g['upper'])})"
                                                       if g["bracketed"] else f" not bracketed: {g['reason']}")]
    for p in g["points"]:
        co = "" if p["catastrophic_overfitting"] is None else f"  catastrophic_overfitting={p['catastrophic_overfitting']}"
        held = p[f"adv_loss_{p['split']}"]  # the loss that selected the epoch
        lines.append(f"    trial {p['trial']:5d} eps {_px(p['eps']):>9s} epoch {p['epoch']:3d} "
                     f"adv_loss_train {p['adv_loss_train']:.4f} adv_loss_{p['split']} {held:.4f}{co}")
    if g["missing"]:
        lines.append(f"    no results yet: trials {g['missing']}")
    for f in g["fast"]:
        where = "within the fine-tuning range" if f["bracketed"] else "extrapolated"
        est = f"{_px(f['eps_star'])} ({where})" if f["eps_star"] is not None else f"none: {f['reason']}"
        lines.append(f"  fast eps* ({f['method']} fine-tuning, {f['epochs']} epoch(s), {f['n_points']} points) = {est}")
    return lines


@app.command("epsilon-star")
def epsilon_star(
    sweep: Annotated[str, typer.Option("--sweep", help="sweep name or id")],
    as_json: Annotated[bool, typer.Option("--json", help="the groups as JSON (the API's EpsilonStarOut groups)")] = False,
    database_url: DbOpt = None,
) -> None:
    """eps* per group of a sweep: from scratch (interpolated) and fast (fine-tuning runs), with the FGSM
    catastrophic-overfitting flag per fgsm-trained run."""
    from db.engine import make_engine, session_factory, upgrade
    from db.sweeps import NotFound
    from service.epsilon_star import epsilon_star_for_sweep

    engine = make_engine(settings_from(database_url=database_url).database_url)
    upgrade(engine)
    try:
        with session_factory(engine)() as s:
            groups = epsilon_star_for_sweep(s, sweep_ref=sweep)
    except NotFound:
        fail(f"sweep: {sweep!r} not found")
    except SpecError as e:
        fail(str(e))
    if as_json:
        typer.echo(json.dumps(groups, indent=1))
        return
    for g in groups:
        typer.echo("\n".join(_describe(g)))
