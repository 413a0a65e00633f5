"""The DB contract suite's backends: every test taking `db_url` (tests/conftest.py; or a fixture built on it) runs on
SQLite (a temp file) and on PostgreSQL (a fresh schema per test in ROBUSTGRID_TEST_PG_URL, dropped afterwards)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from db.engine import make_engine, session_factory, upgrade
from db.sweeps import create_sweep


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
