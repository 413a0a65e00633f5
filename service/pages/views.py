"""What each page shows, read through db/ functions: the sweep list with progress per status, a sweep's trial table
(one row per trial with its final metrics at one checkpoint and attack, `0.184 ± 0.017`), and the compare view.
Plain dicts for the templates; no HTML here."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from db.contract import DEFAULT_ATTACK, check_attack_key
from db.fields import TRIAL_STATUSES
from db.models import Sweep
from db.sweeps import NotFound, get_sweep, list_sweeps, trial_status_counts
from db.trial_table import count_depth_configs, trial_table_page
from search_spaces.spec import SpecError
from service.plots.common import row_se
from service.settings import Settings

API = "/api/v1"
PAGE_SIZE = 200  # trial rows per page
MAX_PAGE_SIZE = 1000
# Trial-table columns, in order: (key, header). Sortable by any of them (`?sort=key&desc=1`).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("idx", "#"), ("arch", "arch"), ("params", "params"), ("macs", "MACs"), ("method", "method"), ("lam", "lambda"),
    ("eps", "eps (/255)"), ("seed", "seed"), ("status", "status"), ("clean_acc", "clean acc"),
    ("robust_acc", "robust acc"), ("stability", "stability"), ("device_seconds", "device s"),
)  # fmt: skip
BAR_ORDER = ("completed", "failed", "cancelled", "stopped", "running", "queued")  # finished first, left to right
WITH_SE = ("clean_acc", "robust_acc", "stability")
RAY_TOKEN_HINT = ("Ray asks for a token: it is in ~/.ray/auth_token on the Ray head (cat ~/.ray/auth_token); "
                  "paste it when the dashboard asks.")  # fmt: skip


def dashboard_link(settings: Settings) -> str:
    """The Ray dashboard: settings.ray_address when it is the dashboard URL, the GCS host at dashboard_port when it
    is a GCS address, else the local head's dashboard."""
    address = settings.ray_address
    if address.startswith(("http://", "https://")):
        return address.rstrip("/")
    host = address.rsplit(":", 1)[0] if address else settings.dashboard_host
    return f"http://{host}:{settings.dashboard_port}"


def _progress(counts: dict[str, int], n_trials: int) -> list[dict[str, Any]]:
    """Bar segments in status order: status, count, width `pct` and left edge `x`, in percent of the trials."""
    total = max(n_trials, sum(counts.values()), 1)
    order = sorted(TRIAL_STATUSES, key=lambda s: BAR_ORDER.index(s) if s in BAR_ORDER else len(BAR_ORDER))
    segments: list[dict[str, Any]] = []
    x = 0.0
    for s in (s for s in order if counts.get(s)):
        pct = 100.0 * counts[s] / total
        segments.append({"status": s, "count": counts[s], "pct": round(pct, 2), "x": round(x, 2)})
        x += pct
    return segments


def _sweep_summary(session: Session, sweep: Sweep) -> dict[str, Any]:
    counts = trial_status_counts(session, sweep_id=sweep.id)
    return {"id": sweep.id, "name": sweep.name, "status": sweep.status, "imported": bool(sweep.imported),
            "source": sweep.source, "n_trials": sweep.n_trials, "created_at": sweep.created_at,
            "counts": counts, "progress": _progress(counts, sweep.n_trials),
            "done": sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled", "stopped")),
            "dashboard_url": sweep.dashboard_url, "error": sweep.error}  # fmt: skip


def index_view(session: Session, *, settings: Settings, visible_to: str | None = None) -> dict[str, Any]:
    """Every sweep, or with `visible_to` that owner's and the imported references (service.visibility)."""
    sweeps = [_sweep_summary(session, s) for s in list_sweeps(session, visible_to=visible_to)]
    return {"sweeps": sweeps, "runs": [s for s in sweeps if not s["imported"]],
            "references": [s for s in sweeps if s["imported"]], "dashboard_url": dashboard_link(settings),
            "token_hint": RAY_TOKEN_HINT}  # fmt: skip


def _fmt(key: str, value: Any, se: float | None = None) -> str:
    if value is None:
        return ""
    if key == "eps":
        return f"{value * 255:.4g}"
    if key in WITH_SE:
        return f"{value:.3f} ± {se:.3f}" if se is not None else f"{value:.3f}"
    if key == "device_seconds":
        return f"{value:.1f}"
    if key in ("params", "macs"):
        return f"{value:,}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_view(session: Session, *, sweep_id: int, sort: str = "idx", desc: bool = False, offset: int = 0,
               limit: int = PAGE_SIZE, attack: str = DEFAULT_ATTACK, checkpoint: str = "best") -> dict[str, Any]:
    """The sweep page: summary, one row per trial (sorted, one page of `limit` from `offset`, by the database:
    db.trial_table), plot URLs."""
    sweep = get_sweep(session, sweep_id=sweep_id)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id!r} not found")
    keys = [k for k, _ in COLUMNS]
    if sort not in keys:
        raise SpecError("sort", f"{sort!r} is not a column; one of {', '.join(keys)}")
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise SpecError("limit", f"must be in 1..{MAX_PAGE_SIZE}, got {limit}")
    if offset < 0:
        raise SpecError("offset", f"must be >= 0, got {offset}")
    try:
        check_attack_key(attack)
    except ValueError as e:
        raise SpecError("attack", str(e)) from None
    try:
        table = trial_table_page(session, sweep_id=sweep.id, checkpoint=checkpoint, attack=attack, sort=sort,
                                 desc=desc, limit=limit, offset=offset)
    except ValueError as e:
        field, _, reason = str(e).partition(": ")
        raise SpecError(field, reason) from None
    page = []
    for t in table.rows:
        raw = {k: t[k] for k in keys}
        final = {k: t[k] for k in (*WITH_SE, "n_total")}
        cells = [_fmt(k, raw[k], row_se(final, k) if k in WITH_SE else None) for k in keys]
        page.append({"id": t["id"], "raw": raw, "cells": cells, "error": t["error"],
                     "curves_url": f"{API}/trials/{t['id']}/plots/curves.svg"})
    n_rows = table.total
    many_depths = count_depth_configs(session, sweep_id=sweep.id) > 1
    query = urlencode({"attack": attack, "checkpoint": checkpoint})

    def page_url(new_offset: int) -> str:
        return f"?{urlencode({'sort': sort, 'desc': int(desc), 'offset': new_offset, 'limit': limit})}"

    return {"sweep": _sweep_summary(session, sweep), "columns": COLUMNS, "rows": page, "n_rows": n_rows,
            "sort": sort, "desc": desc, "offset": offset, "limit": limit, "attack": attack, "checkpoint": checkpoint,
            "prev_url": page_url(max(offset - limit, 0)) if offset > 0 else None,
            "next_url": page_url(offset + limit) if offset + limit < n_rows else None,
            "sort_urls": {k: f"?{urlencode({'sort': k, 'desc': int(k == sort and not desc), 'limit': limit})}"
                          for k in keys},
            "pareto_url": f"{API}/sweeps/{sweep.id}/plots/pareto.png?{query}",
            "heatmap_url": f"{API}/sweeps/{sweep.id}/plots/depth-heatmap.png?{query}" if many_depths else None,
            "plot_links": {kind: f"{API}/sweeps/{sweep.id}/plots/{kind}.png?{query}"
                           for kind in ("pareto", "depth-heatmap", "eps", "lambda-width")}}  # fmt: skip


def compare_view(session: Session, *, run: int, reference: list[int], attack: str = DEFAULT_ATTACK,
                 x: str = "params") -> dict[str, Any]:
    """A run sweep and reference sweeps on one Pareto plot (the reference grey, square markers)."""
    sweeps = []
    for sid in [run, *reference]:
        s = get_sweep(session, sweep_id=sid)
        if s is None:
            raise NotFound(f"sweep {sid!r} not found")
        sweeps.append(_sweep_summary(session, s))
    query = urlencode([("x", x), ("attack", attack), *(("reference", str(r)) for r in reference)])
    return {"run": sweeps[0], "references": sweeps[1:], "x": x, "attack": attack,
            "pareto_url": f"{API}/sweeps/{run}/plots/pareto.png?{query}",
            "pareto_svg_url": f"{API}/sweeps/{run}/plots/pareto.svg?{query}"}  # fmt: skip
