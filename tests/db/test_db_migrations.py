"""Schema contract: the Alembic migration creates (and drops) exactly the models' schema on every backend."""

from __future__ import annotations

import sqlite3

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from db.engine import default_sqlite_url, downgrade, make_engine, upgrade
from db.models import Base

TABLES = {"sweeps", "trials", "epoch_metrics", "final_results", "api_tokens", "web_sessions"}
HEAD = "0009"


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_upgrade_by_url_creates_tables_and_version(db_url, engine) -> None:
    upgrade(db_url)  # by URL: Alembic builds its own engine
    assert _tables(engine) == TABLES | {"alembic_version"}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
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


def _insert_0001_rows(engine: Engine) -> None:
    """A sweep, a trial, an epoch row and a final row written in schema 0001's words."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO sweeps (id, name, spec, status, created_at, updated_at, code_version, n_trials) "
            "VALUES (1, 'old', '{}', 'completed', '2026-01-01 00:00:00+00:00', '2026-01-01 00:00:00+00:00', 'v1', 1)"))
        conn.execute(text(
            "INSERT INTO trials (id, sweep_id, idx, config, config_hash, arch, depths, widths, params, flops, method,"
            " lam, eps, norm, dataset, n_train, seed, status, gpu_seconds, code_version) VALUES (7, 1, 0, '{}', 'h',"
            " 'wrn-d1-1-1-w1-1-1', '1-1-1', '1-1-1', 77850, 12501632, 'sat', 1.0, 0.0313725, 'linf', 'cifar10-jpeg',"
            " NULL, 0, 'completed', 42.5, 'v1')"))
        conn.execute(text(
            "INSERT INTO epoch_metrics (trial_id, epoch, clean_loss_test, adv_loss_test, seconds, lam_t) "
            "VALUES (7, 1, 0.9, 1.7, 3.25, 1.0)"))
        conn.execute(text(
            "INSERT INTO final_results (trial_id, checkpoint, attack, epoch, robust_acc, n_total, n_correct, n_stable,"
            " n_robust, clean_loss_test, gpu_seconds) VALUES (7, 'best', 'pgd20', 1, 0.25, 100, 60, 40, 25, 0.8, 5.5)"))


def test_0002_moves_rows_up_and_down(engine) -> None:
    """Migration 0002 renames columns with their data (flops -> macs, gpu_seconds -> device_seconds, per-epoch
    _loss_test -> _loss_val), adds provenance columns, and the downgrade moves the data back."""
    upgrade(engine, "0001")
    _insert_0001_rows(engine)
    upgrade(engine)
    with engine.connect() as conn:
        t = conn.execute(text("SELECT macs, device_seconds, device, node FROM trials WHERE id = 7")).one()
        e = conn.execute(text("SELECT clean_loss_val, adv_loss_val, device_seconds FROM epoch_metrics")).one()
        f = conn.execute(text("SELECT device_seconds, clean_loss_test, n_robust FROM final_results")).one()
        sweep_error = conn.execute(text("SELECT error FROM sweeps")).scalar_one()
    assert tuple(t) == (12501632, 42.5, None, None) and tuple(e) == (0.9, 1.7, 3.25)
    assert tuple(f) == (5.5, 0.8, 25) and sweep_error is None
    with engine.begin() as conn:
        conn.execute(text("UPDATE trials SET device = 'cpu', macs = 12501633 WHERE id = 7"))
        conn.execute(text("UPDATE sweeps SET status = 'cancelling'"))  # the state machine's new status
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE sweeps SET status = 'paused'"))
    if engine.dialect.name == "sqlite":  # the table copy ran with foreign keys off; every connection has them on
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    downgrade(engine, "0001")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM sweeps")).scalar_one() == "cancelled"
        assert conn.execute(text("SELECT count(*) FROM epoch_metrics")).scalar_one() == 1  # nothing cascaded
    cols = {c["name"] for c in inspect(engine).get_columns("trials")}
    assert {"flops", "gpu_seconds"} <= cols and not {"macs", "device", "node"} & cols
    with engine.connect() as conn:
        assert tuple(conn.execute(text("SELECT flops, gpu_seconds FROM trials")).one()) == (12501633, 42.5)
        assert tuple(conn.execute(text("SELECT clean_loss_test, adv_loss_test, seconds FROM epoch_metrics")).one()) == (
            0.9, 1.7, 3.25)
        assert conn.execute(text("SELECT gpu_seconds FROM final_results")).scalar_one() == 5.5
    upgrade(engine)  # and up again
    with engine.connect() as conn:
        assert conn.execute(text("SELECT macs FROM trials")).scalar_one() == 12501633


def test_0006_copies_the_trials_sweep_params_and_macs_onto_final_rows(engine) -> None:
    """0006 fills final_results.sweep_id/params/macs from each row's trial (the Pareto front's covering index reads
    them); the downgrade drops them and keeps the rows."""
    upgrade(engine, "0001")
    _insert_0001_rows(engine)
    upgrade(engine)
    with engine.connect() as conn:
        assert tuple(conn.execute(text("SELECT sweep_id, params, macs FROM final_results")).one()) == (
            1, 77850, 12501632)
    assert {f"ix_final_results_front_{y}" for y in ("robust_acc", "clean_acc", "stability")} <= {
        ix["name"] for ix in inspect(engine).get_indexes("final_results")}
    downgrade(engine, "0005")
    assert not {"sweep_id", "params", "macs"} & {c["name"] for c in inspect(engine).get_columns("final_results")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n_robust FROM final_results")).scalar_one() == 25


def test_0008_adds_web_sessions_tied_to_their_token_and_drops_them_down(engine) -> None:
    """0008 creates web_sessions (a session id's hash, its token, an expiry): unique hashes, a session cannot name a
    missing token, deleting the token deletes its sessions; the downgrade drops the table and keeps the tokens."""
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO api_tokens (id, token_hash, prefix, scope, owner, created_at) "
                          "VALUES (1, 'th', 'rg_x', 'read', 'lena', '2026-01-01 00:00:00+00:00')"))
        conn.execute(text("INSERT INTO web_sessions (session_hash, token_id, created_at, expires_at) "
                          "VALUES ('sh', 1, '2026-01-01 00:00:00+00:00', '2026-01-01 12:00:00+00:00')"))
    for values in ("('sh', 1, ", "('sh2', 9, "):  # a second 'sh'; a token that does not exist
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("INSERT INTO web_sessions (session_hash, token_id, created_at, expires_at) VALUES "
                              + values + "'2026-01-01 00:00:00+00:00', '2026-01-01 12:00:00+00:00')"))
    insp = inspect(engine)
    assert {("token_id",), ("expires_at",)} <= {tuple(ix["column_names"]) for ix in insp.get_indexes("web_sessions")}
    downgrade(engine, "0007")
    assert "web_sessions" not in _tables(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT owner FROM api_tokens")).scalar_one() == "lena"
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO web_sessions (session_hash, token_id, created_at, expires_at) "
                          "VALUES ('sh', 1, '2026-01-01 00:00:00+00:00', '2026-01-01 12:00:00+00:00')"))
        conn.execute(text("DELETE FROM api_tokens"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM web_sessions")).scalar_one() == 0  # cascaded


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
