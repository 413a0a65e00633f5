"""Issue 12, fault 5: 500 concurrent result writes on SQLite and 5,000 on PostgreSQL, 10% of them replays of an
earlier write. Exactly the distinct rows land, and no "database is locked" (or any error) reaches a caller. Each
writer thread uses its own session per write, as separate writers would."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from testkit.faults import store_with_trials

from db.contract import EpochReport, FinalRow
from db.engine import make_engine, session_factory
from db.models import EpochMetric, FinalResult
from db.results import upsert_epoch, upsert_final

pytestmark = pytest.mark.faults
PG_URL = os.environ.get("ROBUSTGRID_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CFG = {"depths": (1, 1, 1), "widths": (1, 1, 1), "dataset": "synthetic", "n_train": 64}
THREADS = 16


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[Any, int]]:
    """(database URL, number of writes): a SQLite file with 500, or a fresh PostgreSQL schema with 5,000."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rg.db'}", 500
        return
    schema = f"rg_faults_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"PostgreSQL at {make_url(PG_URL).render_as_string()} unreachable ({type(e).__name__})")
    try:
        yield make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}), 5000
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _writes(trial_ids: list[int], n: int, seed: int = 0) -> list[tuple[str, int, int]]:
    """n writes, (kind, trial id, key), 10% of them replays of an earlier write, shuffled."""
    distinct = n - n // 10
    m = len(trial_ids)
    keys = [("epoch" if i % 2 == 0 else "final", trial_ids[i // 2 % m], i // 2 // m + 1) for i in range(distinct)]
    rng = random.Random(seed)
    out = keys + [rng.choice(keys) for _ in range(n - distinct)]
    rng.shuffle(out)
    return out


def test_concurrent_writes_land_exactly_once(store) -> None:
    url, n = store
    _, trial_ids = store_with_trials(url, [{**CFG, "seed": i} for i in range(10)])
    engine = make_engine(url)
    sessions = session_factory(engine)
    writes = _writes(trial_ids, n)

    def write(w: tuple[str, int, int]) -> None:
        kind, tid, key = w
        with sessions.begin() as s:
            if kind == "epoch":
                upsert_epoch(s, trial_id=tid, report=EpochReport(epoch=key, clean_acc=0.5, robust_acc=key / 1000))
            else:
                upsert_final(s, trial_id=tid, row=FinalRow(checkpoint="best", attack=f"pgd{key}", epoch=1,
                                                           robust_acc=0.25, n_total=4, n_correct=2, n_stable=2,
                                                           n_robust=1))

    t0 = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        errors = [e for e in (f.exception() for f in [pool.submit(write, w) for w in writes]) if e is not None]
    seconds = time.monotonic() - t0
    assert errors == [], f"{len(errors)} writes failed, e.g. {errors[0]!r}"
    with sessions() as s:
        epochs = s.execute(select(EpochMetric.trial_id, EpochMetric.epoch)).all()
        finals = s.execute(select(FinalResult.trial_id, FinalResult.attack)).all()
        assert s.scalar(select(func.count()).select_from(EpochMetric)) == len(epochs)
    want_e = {(t, k) for kind, t, k in writes if kind == "epoch"}
    want_f = {(t, f"pgd{k}") for kind, t, k in writes if kind == "final"}
    assert sorted(epochs) == sorted(want_e) and sorted(finals) == sorted(want_f)  # each distinct row once
    assert len(want_e) + len(want_f) == n - n // 10
    engine.dispose()
    print(f"{n} writes ({n // 10} replays) on {engine.dialect.name}: {seconds:.1f} s, {n / seconds:.0f} writes/s")
