"""`robustgrid ray up | down | status`: start, stop and describe the local Ray head (service.launcher).

`up` starts the head a sweep would start (or finds it running) and says how to log in to its dashboard, how Ray's
own CLI reaches it and how to stop it; `down` stops it; `status` prints the dashboard URL with the login, the GCS
address, the nodes with their resources and the jobs with their sweep metadata. With ROBUSTGRID_RAY_ADDRESS set,
`status` describes that cluster and `up`/`down` refuse: the service does not start or stop a remote cluster.
"""

from __future__ import annotations

from typing import Annotated

import typer

from service import launcher
from service.cli.common import app, fail, settings_from
from service.settings import Settings

ray_app = typer.Typer(no_args_is_help=True, help="Start, stop and describe the local Ray head.")
app.add_typer(ray_app, name="ray")

PortOpt = Annotated[int | None, typer.Option("--dashboard-port", help="dashboard port (ROBUSTGRID_DASHBOARD_PORT)")]
TempOpt = Annotated[str | None, typer.Option("--temp-dir", help="Ray's temp dir (ROBUSTGRID_RAY_TEMP_DIR)")]

GIB = 1024**3


def _local_only(settings: Settings, verb: str) -> None:
    if settings.ray_address:
        fail(f"ray_address: ROBUSTGRID_RAY_ADDRESS={settings.ray_address!r} names a remote cluster; `robustgrid ray "
             f"{verb}` acts on the local head only (unset it, or manage that cluster with Ray's own tools)")


def _resources(res: dict[str, float]) -> str:
    shown = [f"{k} {v:g}" for k, v in res.items() if k in ("CPU", "GPU")]
    shown += [f"{k.removesuffix('memory') or 'memory'} {v / GIB:.1f} GiB" for k, v in res.items()
              if k in ("memory", "object_store_memory")]
    shown += [k.removeprefix("accelerator_type:") for k in res if k.startswith("accelerator_type:")]
    return ", ".join(shown)


@ray_app.command("up")
def up(num_cpus: Annotated[int | None, typer.Option(help="CPUs to advertise (ROBUSTGRID_RAY_NUM_CPUS)")] = None,
       node_ip: Annotated[str | None, typer.Option(help="address to advertise and bind (ROBUSTGRID_RAY_NODE_IP; "
                                                        "default 127.0.0.1: off the network)")] = None,
       dashboard_port: PortOpt = None, temp_dir: TempOpt = None) -> None:
    """Start the local Ray head (or find it running) and print how to log in, join hosts and stop it."""
    settings = settings_from(ray_num_cpus=num_cpus, ray_node_ip=node_ip, dashboard_port=dashboard_port,
                             ray_temp_dir=temp_dir)
    _local_only(settings, "up")
    try:
        cluster = launcher.ensure_ray_head(settings)
    except (RuntimeError, TimeoutError) as e:
        fail(f"ray: {e}")
        return
    typer.echo(f"Ray head {'started' if cluster.started_by_us else 'already running'}; GCS {cluster.gcs_address}")
    typer.echo(launcher.login_help(cluster))
    if settings.ray_node_ip not in ("127.0.0.1", "localhost"):
        typer.echo(f"Join a GPU host: RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<the token> "
                   f"ray start --address={cluster.gcs_address} --node-ip-address=<its IP>")
    typer.echo("Stop it: robustgrid ray down")


@ray_app.command("down")
def down(dashboard_port: PortOpt = None, temp_dir: TempOpt = None) -> None:
    """Stop the local Ray head that `robustgrid ray up`, `demo`, `serve` or `submit` started."""
    settings = settings_from(dashboard_port=dashboard_port, ray_temp_dir=temp_dir)
    _local_only(settings, "down")
    if launcher.stop_local_head(settings):
        typer.echo(f"stopped the local Ray head (dashboard port {settings.dashboard_port})")
    else:
        typer.echo(f"no local Ray head of ours (dashboard port {settings.dashboard_port}); nothing stopped")


@ray_app.command("status")
def status(dashboard_port: PortOpt = None, temp_dir: TempOpt = None) -> None:
    """The dashboard URL and how to log in, the GCS address, the nodes with their resources, the jobs."""
    settings = settings_from(dashboard_port=dashboard_port, ray_temp_dir=temp_dir)
    cluster = launcher.local_head(settings)
    if cluster is None:
        typer.echo(f"no Ray head answers at http://{settings.dashboard_host}:{settings.dashboard_port} "
                   "(robustgrid ray up starts one)")
        raise typer.Exit(1)
    try:
        nodes, jobs = launcher.list_nodes(cluster), launcher.list_jobs(cluster)
    except launcher.RayUnavailable as e:
        fail(f"ray: {e}")
        return
    typer.echo(launcher.login_help(cluster))
    typer.echo(f"GCS: {cluster.gcs_address or 'unknown (a cluster given by its dashboard URL)'}")
    pid = launcher.head_pid(settings) if not settings.ray_address else None
    if pid is not None:
        typer.echo(f"local head: pid {pid} (robustgrid ray down stops it)")
    typer.echo(f"nodes ({len(nodes)}):")
    for n in nodes:
        typer.echo(f"  {n.ip:<15} {'head  ' if n.is_head else 'worker'} {n.state:<5} {_resources(n.resources)}")
    typer.echo(f"jobs ({len(jobs)}):")
    for j in jobs:
        m = j.metadata
        sweep = (f"  sweep {m['robustgrid_sweep_id']} {m.get('robustgrid_sweep_name', '')!r}, "
                 f"{m.get('robustgrid_trials', '?')} trials, owner {m.get('robustgrid_owner') or '-'}"
                 if "robustgrid_sweep_id" in m else "")
        typer.echo(f"  {j.job_id:<34} {j.status:<9}{sweep}")
