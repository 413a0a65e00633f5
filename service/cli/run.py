"""`robustgrid train | serve | demo`: one trial in-process without Ray (torch, lazily), the API server, and the main
job (embedded Ray + SQLite, the `demo` preset end to end, then the results table and the Pareto front)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from db.contract import DEFAULT_ATTACK
from search_spaces.spec import SpecError
from service.cli.common import DataRootOpt, DbOpt, PresetOpt, SetOpt, SpecOpt, app, build_request, fail, settings_from
from service.cli.sweeps import submit_request, wait_for
from service.settings import Settings


@app.command()
def train(preset: PresetOpt = None, spec: SpecOpt = None, set_: SetOpt = None,
          trial: Annotated[int, typer.Option(help="which trial of the expanded plan")] = 0,
          data_root: DataRootOpt = None,
          device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available)")] = None,
          out: Annotated[Path | None, typer.Option(help="write the final rows as JSON here")] = None) -> None:
    """Train and evaluate one trial without Ray (same training function as the Ray trainable)."""
    import logging

    from service.submission import data_root_of, plan_request
    from workers.final_eval import pick_device, train_and_evaluate
    from workers.init_from import resolve_init_from

    logging.basicConfig(level=logging.WARNING)
    req = build_request(preset, spec, set_, data_root=data_root)
    settings = settings_from(data_root=data_root)  # passed to the workers explicitly, as the driver's run context is
    try:
        _, p = plan_request(req, settings)
    except SpecError as e:
        fail(str(e))
    if not 0 <= trial < len(p.trials):
        fail(f"trial: {trial} is outside the plan's 0..{len(p.trials) - 1}")
    cfg = p.trials[trial].config
    if cfg.init_from is not None and cfg.init_from.startswith("trial:"):  # as the driver: against the storage path
        try:
            cfg = cfg.model_copy(update={"init_from": str(resolve_init_from(cfg.init_from,
                                                                            storage_path=settings.storage_path))})
        except (FileNotFoundError, ValueError) as e:
            fail(str(e))
    typer.echo(f"training {cfg.arch} ({p.trials[trial].params:,} params) {cfg.method} eps={cfg.eps:.4f}", err=True)

    def on_epoch(m: dict[str, Any], _: Any) -> None:
        typer.echo(f"epoch {m['epoch']}/{cfg.epochs} clean_acc {m.get('clean_acc', float('nan')):.3f} "
                   f"robust_acc {m.get('robust_acc', float('nan')):.3f} loss {m['adv_loss_train']:.3f} "
                   f"{m['device_seconds']:.1f} s", err=True)

    _, rows = train_and_evaluate(cfg, device=pick_device(device), data_root=data_root_of(req, settings),
                                 on_epoch=on_epoch)
    text = json.dumps([r.model_dump() for r in rows], indent=1)
    if out is not None:
        out.write_text(text)
    typer.echo(text)


SHUTDOWN_GRACE_S = 5  # after SIGTERM or Ctrl-C, requests still running this long are cancelled


@app.command()
def serve(host: str | None = None, port: int | None = None) -> None:
    """Run the API (uvicorn). SIGTERM or Ctrl-C: new connections are refused, running requests get
    SHUTDOWN_GRACE_S seconds, then the process exits (within about SHUTDOWN_GRACE_S + 1 s)."""
    import uvicorn

    from service.app import create_app

    settings = settings_from(api_host=host, api_port=port)
    uvicorn.run(create_app(settings, load_references=True), host=settings.api_host, port=settings.api_port,
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    _leave_stuck_requests()


def _leave_stuck_requests() -> None:
    """Exit now even if a cancelled request's worker thread still runs. uvicorn cancels the requests left after
    the grace period, but a sync route runs in a thread Python cannot stop (one waiting 30 s for SQLite's write
    lock, say), and the interpreter would wait for it at exit. Its open transaction is rolled back by the
    database when the process's connections drop, so nothing half-written remains."""
    import logging
    import os
    import sys
    import threading

    stuck = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon and t.is_alive()]
    if stuck:
        logging.getLogger(__name__).warning("exiting past %d request thread(s) still running after the %d s grace "
                                            "period", len(stuck), SHUTDOWN_GRACE_S)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


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
    from db.engine import make_engine, session_factory, upgrade
    from service.references import load_published

    engine = make_engine(settings.database_url)
    upgrade(engine)
    loaded = load_published(session_factory(engine), settings.published_dir)  # once; a rerun finds them
    if loaded:
        typer.echo(f"demo: published references loaded as {', '.join(loaded)}", err=True)
    req = build_request("demo", None, [f"dataset={json.dumps(dataset)}"], data_root=root)
    sweep_id = submit_request(req, settings)
    cluster = launcher.ensure_ray_head(settings)
    typer.echo(launcher.login_help(cluster), err=True)
    state = wait_for(settings, sweep_id)

    from db.results import query_results
    from db.stats import with_standard_errors
    from db.sweeps import list_trials
    from service.analysis import pareto_report
    from service.exports import collapse_best_last

    with session_factory(make_engine(settings.database_url))() as s:
        rows = with_standard_errors(query_results(s, filters={"sweep": sweep_id}, kind="final"))
        report = pareto_report(s, metrics=["params", "robust_acc"], maximize=None,
                               filters={"sweep": sweep_id, "attack": DEFAULT_ATTACK})
        errors = [f"trial {t.id} {t.arch}: {t.error}" for t in list_trials(s, sweep_id=sweep_id)
                  if t.status == "failed"]
    if errors:
        typer.echo("\n".join(errors), err=True)
        fail(f"demo: {len(errors)} trial(s) of sweep {sweep_id} failed")
    typer.echo(f"\nResults of sweep {sweep_id} ({state}); a checkpoint 'best=last' was evaluated once:")
    typer.echo(render_rows(collapse_best_last(rows), "table"))
    typer.echo(f"\nPareto front (params min, robust_acc max, best checkpoint, {DEFAULT_ATTACK}; ± one standard error):")
    typer.echo(render_rows(report.front, "table",
                           columns=["trial", "arch", "params", "robust_acc", "clean_acc", "stability"]))
    typer.echo(report.note)
    for path in _demo_plots(settings, sweep_id):
        typer.echo(f"plot written: {path}")
    typer.echo("\n" + launcher.login_help(cluster))
    from service.auth import issue_token

    with session_factory(engine).begin() as s:  # the demo's own API token (admin), shown once
        token = issue_token(s, scope="admin", owner="demo")[1]
    typer.echo(f"API token of this demo (admin; stored hashed, shown only now): {token}\n"
               f"  robustgrid serve  # then, in another shell:\n"
               f"  curl -H 'Authorization: Bearer {token}' "
               f"http://{settings.api_host}:{settings.api_port}/api/v1/sweeps/{sweep_id}")
    base = f"http://{settings.api_host}:{settings.api_port}"
    typer.echo(f"The sweep's page beside the published references (it asks for that token once, then lands):\n"
               f"  {base}/compare?run={sweep_id}{''.join(f'&reference={r}' for r in _reference_ids(settings))}")
    typer.echo(f"demo wall time: {time.monotonic() - t0:.0f} s")
    if stop_ray:
        launcher.stop_local_head(settings)
    elif cluster.started_by_us or not settings.ray_address:
        typer.echo("The local Ray head keeps running (robustgrid ray status); stop it: robustgrid ray down")


def _reference_ids(settings: Settings) -> list[int]:
    """Ids of the published reference sweeps in the store (service.references names them published-<stem>)."""
    from db.engine import make_engine, session_factory
    from db.sweeps import list_sweeps
    from service.references import PUBLISHED_PREFIX

    with session_factory(make_engine(settings.database_url))() as s:
        return [sw.id for sw in list_sweeps(s) if sw.imported and sw.name.startswith(PUBLISHED_PREFIX)]


def _demo_plots(settings: Settings, sweep_id: int) -> list[Path]:
    """The demo's Pareto front beside the published references as PNG and SVG, in ./robustgrid-demo-<id>/."""
    from db.engine import make_engine, session_factory
    from service.plots import sweep_figure
    from service.plots.common import PlotOptions, render

    out = Path.cwd() / f"robustgrid-demo-{sweep_id}"
    out.mkdir(exist_ok=True)
    options = PlotOptions(reference=tuple(str(r) for r in _reference_ids(settings)))
    written = []
    with session_factory(make_engine(settings.database_url))() as s:
        for fmt in ("png", "svg"):
            path = out / f"pareto.{fmt}"
            path.write_bytes(render(sweep_figure(s, kind="pareto", sweep_ref=sweep_id, options=options), fmt))
            written.append(path)
    return written
