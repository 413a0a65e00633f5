"""Schema contract: the Alembic migration creates (and drops) exactly the models' schema on every backend."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from db.engine import default_sqlite_url, downgrade, make_engine, upgrade
from db.models import Base

TABLES = {"sweeps", "trials", "epoch_metrics", "final_results"}


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_upgrade_by_url_creates_tables_and_version(db_url, engine) -> None:
    upgrade(db_url)  # by URL: Alembic builds its own engine
    assert _tables(engine) == TABLES | {"alembic_version"}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0001"
    upgrade(db_url)  # idempotent
    assert _tables(engine) == TABLES | {"alembic_version"}


def test_downgrade_drops_tables(engine) -> None:
    upgrade(engine)
    downgrade(engine)
    assert _tables(engine) == {"alembic_version"}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 0
    upgrade(engine)
    assert _tables(engine) == TABLES | {"alembic_version"}


def test_migration_matches_models(engine) -> None:
    """Alembic's autogenerate finds no difference between the migrated database and the models."""
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_indexes_on_foreign_keys_and_filters(engine) -> None:
    upgrade(engine)
    insp = inspect(engine)
    indexed = {t: {tuple(ix["column_names"]) for ix in insp.get_indexes(t)} for t in TABLES}
    for col in ("sweep_id", "status", "arch", "method", "eps", "dataset"):
        assert (col,) in indexed["trials"], col
    assert ("trial_id",) in indexed["epoch_metrics"]
    assert ("trial_id",) in indexed["final_results"]
    uniques = {t: {tuple(u["column_names"]) for u in insp.get_unique_constraints(t)} for t in TABLES}
    assert ("sweep_id", "idx") in uniques["trials"] and ("sweep_id", "config_hash") in uniques["trials"]
    assert ("trial_id", "epoch") in uniques["epoch_metrics"]
    assert ("trial_id", "checkpoint", "attack") in uniques["final_results"]


def test_upgrade_from_another_cwd(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = default_sqlite_url(tmp_path / "nested" / "dir")
    assert url.endswith("/nested/dir/robustgrid.db") and url.startswith("sqlite:////")
    upgrade(url)  # make_engine creates the directory
    engine = make_engine(url)
    assert _tables(engine) >= TABLES
    engine.dispose()


def test_sqlite_wal_and_foreign_keys(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    engine.dispose()
    raw = sqlite3.connect(tmp_path / "wal.db")  # WAL is persistent: a plain connection sees it too
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_sqlite_memory_url_shares_one_database() -> None:
    engine = make_engine("sqlite://")
    upgrade(engine)
    assert _tables(engine) >= TABLES
    engine.dispose()


def test_db_imports_no_other_package() -> None:
    """db/ stands alone: importing all of it pulls in none of service/, workers/, search_spaces/, torch, ray."""
    modules = "db, db.models, db.engine, db.sweeps, db.results, db.pareto, db.epsilon_star, db.fields"
    code = (
        f"import sys, {modules}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'service', 'workers', 'search_spaces', 'torch',"
        " 'ray'})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
