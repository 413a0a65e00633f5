"""Reference sweeps: external results imported into the store (db.imports), and the published results of the studies
(`published_dir`, by default ../shared/data/published) loaded once as `published-<file stem>` so every table,
front and plot can show the papers beside a run.

The published files are imported as any file is, with two allowances their README asks for: attack keys include the
references' own (`gama100`, `fab`, `square`, and a bare `cw` for CW-inf whose step count the papers do not state),
and what a paper does not state (MACs of a DenseNet, a lambda) stays NULL. Rows the store still cannot take (a
model with neither parameters nor MACs, a duplicated measurement) are left out, counted by reason in the log
(judgement call 10 of the README allows it).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.imports import ImportResult, import_rows, wrn_shape
from db.models import Sweep
from search_spaces.catalog import DATASETS
from search_spaces.counting import analytic_counts
from service.csv_cells import read_csv_rows

log = logging.getLogger(__name__)
PUBLISHED_PREFIX = "published-"


def count_wrn(arch: str, dataset: str) -> tuple[int, int] | None:
    """(params, MACs of one image) of a WRN arch key on a dataset of the catalogue; None for anything else."""
    shape = wrn_shape(arch)
    info = DATASETS.get(dataset)
    if shape is None or info is None:
        return None
    try:
        depths = tuple(int(d) for d in shape[0].split("-"))
        widths = tuple(float(w) for w in shape[1].split("-"))
    except ValueError:
        return None
    return analytic_counts("wrn", depths, widths, info["num_classes"], info["channels"], info["image_size"])


def import_rows_counted(session: Session, *, name: str, rows: list[dict[str, Any]], source: str | None,
                        skip_invalid: bool = False) -> ImportResult:
    """db.imports.import_rows with params and MACs counted for WRN keys where the rows lack them."""
    return import_rows(session, name=name, rows=rows, source=source, count=count_wrn, skip_invalid=skip_invalid)


def import_csv(session: Session, *, name: str, data: bytes | str, source: str | None,
               skip_invalid: bool = False) -> ImportResult:
    """A CSV file's data rows (row 1: the first after the header; service.csv_cells.read_csv_rows, which rejects a
    ragged row or a byte that is not UTF-8 whatever `skip_invalid` says) imported as `import_rows_counted`."""
    return import_rows_counted(session, name=name, rows=read_csv_rows(data), source=source,
                               skip_invalid=skip_invalid)


def load_published(sessions: sessionmaker[Session], published_dir: str | Path | None) -> list[str]:
    """Import every `*.csv` under `published_dir` as the reference sweep `published-<stem>` unless a sweep of that
    name exists (idempotent: a second start does nothing). Returns the names imported now."""
    if published_dir is None:
        log.info("published references: no published_dir (and no ../shared/data/published); nothing loaded")
        return []
    root = Path(published_dir)
    if not root.is_dir():
        log.warning("published references: %s is not a directory; nothing loaded", root)
        return []
    loaded = []
    for path in sorted(root.glob("*.csv")):
        name = PUBLISHED_PREFIX + path.stem
        with sessions.begin() as s:
            if s.scalar(select(Sweep.id).where(Sweep.name == name)) is not None:
                continue
            result = import_csv(s, name=name, data=path.read_bytes(), skip_invalid=True,
                                source=f"published results, {path.name} (see {root / 'README.md'})")
        reasons = Counter(f"{e.field}: {e.reason.split(';')[0][:70]}" for e in result.skipped)
        log.info("published references: %s <- %s: %d trials, %d final rows; %d rows left out (%s)", name, path.name,
                 result.n_trials, result.n_final, len(result.skipped),
                 "; ".join(f"{n} x {r}" for r, n in reasons.most_common()) or "none")
        loaded.append(name)
    return loaded
