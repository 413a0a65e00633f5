"""Live progress of a sweep for the CLI (`submit --wait`, `demo`): one bar for the sweep's epochs with an ETA and
one bar per running trial, drawn with rich; on a non-terminal (CI logs, pipes) a plain line whenever the counts
change instead."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from db.progress import TrialProgress

FINISHED = ("completed", "stopped", "failed", "cancelled")


class SweepProgress:
    """Feed it `update(status, trials)` on every poll; use it as a context manager around the polling loop."""

    def __init__(self, sweep_id: int, console: Console | None = None):
        self.sweep_id = sweep_id
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("epochs"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=self.console, disable=not self.live)
        self.total_task: Any = None
        self.trial_tasks: dict[int, Any] = {}
        self.last_line: str | None = None
        self.t0 = time.monotonic()

    def __enter__(self) -> SweepProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def update(self, status: str, trials: list[TrialProgress]) -> None:
        done = sum(t.epochs_total if t.status in FINISHED else min(t.epochs_done, t.epochs_total) for t in trials)
        total = sum(t.epochs_total for t in trials) or 1
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        if not self.live:
            line = f"sweep {self.sweep_id} {status}: {summary}; {done}/{total} epochs"
            if line != self.last_line:
                self.console.print(f"[{time.monotonic() - self.t0:6.0f} s] {line}", highlight=False)
                self.last_line = line
            return
        desc = f"sweep {self.sweep_id} {status} ({summary})"
        if self.total_task is None:
            self.total_task = self.progress.add_task(desc, total=total)
        self.progress.update(self.total_task, completed=done, total=total, description=desc)
        for t in trials:
            task = self.trial_tasks.get(t.id)
            if t.status == "running" and task is None:
                self.trial_tasks[t.id] = self.progress.add_task(f"  trial {t.id} {t.arch}",
                                                                total=t.epochs_total or 1, completed=t.epochs_done)
            elif task is not None:
                self.progress.update(task, completed=min(t.epochs_done, t.epochs_total or 1))
                if t.status in FINISHED:
                    self.progress.update(task, description=f"  trial {t.id} {t.arch} {t.status}")
                    self.progress.stop_task(task)
