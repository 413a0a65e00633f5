"""The command line as a user meets it: `python -m service.cli ...` in a subprocess (its exit status, stdout and
stderr as they are printed, tracebacks included), with the test's environment (PYTHONPATH) passed on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`robustgrid ARGS...` run as a subprocess; PYTHONPATH starts with this checkout so its code is the one run."""
    full = {**os.environ, **(env or {})}
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), full.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
                          env=full, cwd=cwd or REPO, timeout=timeout, check=False)
