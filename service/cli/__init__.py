"""The `robustgrid` command line (console script `robustgrid = "service.cli:app"`; also `python -m service.cli`).

service.cli.common holds the typer `app` and the shared helpers; each command group below registers its commands on
it by decorator when imported here (the order is the order of `robustgrid --help`). No command module imports this
package's __init__ or another group except service.cli.sweeps (`wait_for`, `submit_request`).
"""

from service.cli import bench, evaluate, lifecycle, plan, plot, ray, results, run, science, sweeps, tokens  # noqa: F401  (registration, in order)
from service.cli.common import app

__all__ = ["app"]
