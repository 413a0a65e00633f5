"""Training curves of one trial (db.results.trial_curves): the objective's two terms (natural risk and robust
regularisation, nats), validation stability, and validation robust accuracy (clean accuracy dashed beside it),
each against the epoch."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure
from sqlalchemy.orm import Session

from db.results import trial_curves
from db.sweeps import NotFound, get_trial
from service.plots.common import empty_note, label_of, lam_text, new_figure

# (panel title, [(field, line style)]): one panel each, epoch on x
PANELS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("objective terms (train)", (("natural_risk", "-"), ("robust_reg", "-"))),
    ("stability (validation)", (("stability", "-"),)),
    ("accuracy (validation)", (("robust_acc", "-"), ("clean_acc", "--"))),
)


def curve_rows(session: Session, *, trial_id: int) -> list[dict[str, Any]]:
    if get_trial(session, trial_id=trial_id) is None:
        raise NotFound(f"trial {trial_id!r} not found")
    return trial_curves(session, trial_id=trial_id)


def draw_curves(rows: list[dict[str, Any]], *, title: str) -> Figure:
    """Three panels; each line's label is its field name and holds the epochs that have a value."""
    fig = new_figure(11.0, 3.4)
    axes = fig.subplots(1, len(PANELS), squeeze=False)[0]
    for ax, (panel, lines) in zip(axes, PANELS, strict=True):
        drawn = 0
        for field_name, style in lines:
            points = [(r["epoch"], r[field_name]) for r in rows if r[field_name] is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, marker=".", label=field_name)
                drawn += 1
        if drawn:
            ax.legend(fontsize=7)
        else:
            empty_note(ax, "no epochs reported yet")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label_of(lines[0][0]))
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return fig


def curves_figure(session: Session, *, trial_id: int) -> Figure:
    rows = curve_rows(session, trial_id=trial_id)
    trial = get_trial(session, trial_id=trial_id)
    assert trial is not None
    title = (f"trial {trial.id}: {trial.arch}, {trial.method}, {lam_text(trial.lam)}, eps {trial.eps * 255:g}/255 "
             f"({trial.status})")
    return draw_curves(rows, title=title)
