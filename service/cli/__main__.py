"""`python -m service.cli ...`: the same app as the `robustgrid` console script."""

from service.cli import app

app(prog_name="robustgrid")
