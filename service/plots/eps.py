"""Robust accuracy, stability and the adversarial training loss against eps, eps* marked (science.md, Study C).

Panels 1-2: the final rows (options' checkpoint and attack) of the sweep's from-scratch trials; panel 3: the points
eps* is computed from (service.epsilon_star: `adv_loss_train` at each run's selected epoch) with R0 (the clean
run's clean held-out loss at its selected epoch, the points' rule) as a horizontal line. eps* of each group is a
dotted vertical line in every panel, in the group's colour. A sweep whose eps* cannot be computed (no eps = 0 run) is drawn without it; the title says why.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure
from sqlalchemy.orm import Session

from db.sweeps import list_trials
from search_spaces.spec import SpecError
from service.epsilon_star import GROUP_KEYS, epsilon_star_for_sweep
from service.plots.common import (
    MAX_SERIES,
    PlotOptions,
    empty_note,
    final_rows,
    label_of,
    lam_text,
    new_figure,
    resolve_sweep,
)

METRICS = ("robust_acc", "stability")  # panels 1-2, from final rows


@dataclass
class EpsGroup:
    """One group (GROUP_KEYS) of from-scratch runs: its metric points and eps* (eps in [0, 1] pixel units)."""

    key: tuple[Any, ...]
    metrics: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # metric -> [(eps, value)] by eps
    loss: list[tuple[float, float]] = field(default_factory=list)  # [(eps, adv_loss_train)] by eps
    r0: float | None = None
    eps_star: float | None = None
    reason: str | None = None

    @property
    def label(self) -> str:
        k = dict(zip(GROUP_KEYS, self.key, strict=True))
        n = f", n {k['n_train']}" if k["n_train"] is not None else ""
        return f"{k['arch']} {k['method']} {lam_text(k['lam'])}{n} seed {k['seed']}"


def eps_groups(session: Session, *, sweep_ref: int | str, options: PlotOptions) -> tuple[list[EpsGroup], str | None]:
    """The groups (sorted by key) and, when eps* could not be computed at all, the reason."""
    sweep = resolve_sweep(session, sweep_ref)
    fine_tuning = {t.id for t in list_trials(session, sweep_id=sweep.id) if (t.config or {}).get("init_from")}
    groups: dict[tuple[Any, ...], EpsGroup] = {}
    points: dict[tuple[Any, ...], dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in final_rows(session, sweep=sweep, options=options):
        if r["trial"] in fine_tuning:
            continue
        key = tuple(r[k] for k in GROUP_KEYS)
        groups.setdefault(key, EpsGroup(key=key))
        for m in METRICS:
            if r[m] is not None:
                points[key][m].append((float(r["eps"]), float(r[m])))
    failure = None
    try:
        estimates = epsilon_star_for_sweep(session, sweep_ref=sweep.id)
    except SpecError as e:
        estimates, failure = [], e.reason
    for est in estimates:
        if est["sweep"] != sweep.name:
            continue  # a group of another sweep's clean run (fine-tuning links); drawn on that sweep's plot
        key = tuple(est[k] for k in GROUP_KEYS)
        g = groups.setdefault(key, EpsGroup(key=key))
        g.loss = sorted((float(p["eps"]), float(p["adv_loss_train"])) for p in est["points"])
        g.r0, g.eps_star, g.reason = est["r0"], est["eps_star"], est["reason"]
    for key, g in groups.items():
        g.metrics = {m: sorted(points[key][m]) for m in METRICS}
    return [groups[k] for k in sorted(groups, key=repr)], failure


def draw_eps(groups: list[EpsGroup], failure: str | None, options: PlotOptions) -> Figure:
    """Three panels; lines are labelled by group, eps* lines carry the gid `eps-star` (x in /255 units). The first
    MAX_SERIES groups are drawn (6,500 one-seed groups took 7 minutes); the title counts the others."""
    fig = new_figure(12.0, 3.8)
    axes = fig.subplots(1, 3, squeeze=False)[0]
    hidden = max(len(groups) - MAX_SERIES, 0)
    groups = groups[:MAX_SERIES]
    for i, g in enumerate(groups):
        color = f"C{i % 10}"
        for ax, m in zip(axes[:2], METRICS, strict=True):
            if g.metrics.get(m):
                xs, ys = zip(*g.metrics[m], strict=True)
                ax.plot([x * 255 for x in xs], ys, "o-", ms=4, color=color, label=g.label)
        if g.loss:
            xs, ys = zip(*g.loss, strict=True)
            axes[2].plot([x * 255 for x in xs], ys, "o-", ms=4, color=color, label=g.label)
        if g.r0 is not None:
            axes[2].axhline(g.r0, color=color, ls="--", lw=0.8, gid="r0")
        if g.eps_star is not None:
            for ax in axes:
                ax.axvline(g.eps_star * 255, color=color, ls=":", lw=1.5, gid="eps-star")
    titles = (f"robust_acc ({options.checkpoint}, {options.attack})", f"stability ({options.checkpoint})",
              "adv_loss_train at the selected epoch; R0 dashed")  # fmt: skip
    for ax, title, m in zip(axes, titles, (*METRICS, "adv_loss_train"), strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(label_of("eps"))
        ax.set_ylabel(label_of(m))
        ax.grid(alpha=0.3)
        if not ax.lines:
            empty_note(ax, "no points")
    if groups:
        axes[0].legend(fontsize=6)
    stars = [f"{g.eps_star * 255:.2f}/255" for g in groups if g.eps_star is not None]
    reasons = sorted({g.reason for g in groups if g.eps_star is None and g.reason})
    note = f"eps* (dotted) = {', '.join(stars)}" if stars else \
        f"eps* not available: {failure or '; '.join(reasons) or 'no groups'}"  # fmt: skip
    fig.suptitle(note + (f" (the first {MAX_SERIES} groups; {hidden:,} more not drawn)" if hidden else ""),
                 fontsize=9)
    return fig


def eps_figure(session: Session, *, sweep_ref: int | str, options: PlotOptions) -> Figure:
    groups, failure = eps_groups(session, sweep_ref=sweep_ref, options=options)
    return draw_eps(groups, failure, options)
