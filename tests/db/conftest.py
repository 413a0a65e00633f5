"""The DB contract suite's backends: every test taking `db_url` (or a fixture built on it) runs on SQLite (a temp
file) and on PostgreSQL (a fresh schema per test in ROBUSTGRID_TEST_PG_URL, dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, session_factory, upgrade
from db.sweeps import create_sweep

PG_URL = os.environ.get("ROBUSTGRID_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_unreachable() -> str | None:
    """None when the PostgreSQL server answers, else the reason it does not."""
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as e:  # noqa: BLE001 - any failure means: skip the PostgreSQL half
        return f"PostgreSQL at {make_url(PG_URL).render_as_string()} unreachable ({type(e).__name__}: {e})"
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Any, pg_unreachable: str | None) -> Iterator[str | URL]:
    """An empty database: a SQLite file, or a fresh PostgreSQL schema (set as the search_path of every
    connection, so the migration and Alembic's version table land in it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'robustgrid-test.db'}"
        return
    if pg_unreachable:
        pytest.skip(pg_unreachable)
    schema = f"rg_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str | URL) -> Iterator[Engine]:
    """An engine on the empty database (not migrated)."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on the migrated database."""
    upgrade(engine)
    return session_factory(engine)


def _trial_dict(i: int, **overrides: Any) -> dict[str, Any]:
    """One trial row as the planner would hand it to create_sweep."""
    depths, widths = ("5-5-5", "10-10-10") if i % 2 == 0 else ("3-3-3", "4-4-4")
    t: dict[str, Any] = {
        "config": {"model": "wrn", "depths": depths, "widths": widths, "eps": 8 / 255, "seed": i},
        "config_hash": f"hash-{i:04d}",
        "arch": f"wrn-d{depths}-w{widths}",
        "depths": depths,
        "widths": widths,
        "params": 46_160_474 if i % 2 == 0 else 2_000_000 + i,
        "macs": 6_658_906_368 if i % 2 == 0 else 300_000_000 + i,
        "method": "sat" if i < 2 else "trades",
        "lam": 1.0 if i < 2 else 6.0,
        "eps": 8 / 255,
        "norm": "linf",
        "dataset": "cifar10-jpeg",
        "n_train": None if i % 2 == 0 else 10_000,
        "seed": i,
    }
    t.update(overrides)
    return t


@pytest.fixture
def trial_dict() -> Callable[..., dict[str, Any]]:
    """trial_dict(i, **overrides): one trial row as the planner hands it to create_sweep."""
    return _trial_dict


@pytest.fixture
def make_sweep(factory: sessionmaker[Session]) -> Callable[..., tuple[int, list[int]]]:
    """make_sweep(name="s1", n=4): create a sweep with n trials; returns (sweep id, trial ids in idx order)."""

    def make(name: str = "s1", n: int = 4) -> tuple[int, list[int]]:
        with factory.begin() as s:
            trials = [_trial_dict(i) for i in range(n)]
            sweep = create_sweep(s, name=name, spec={"preset": "demo"}, trials=trials, code_version="abc123")
            return sweep.id, [t.id for t in sweep.trials]

    return make
