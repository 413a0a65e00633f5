"""Engines, sessions and schema migrations.

SQLite (the default, one writer: the driver's callback) runs in WAL mode with foreign keys on; PostgreSQL is chosen
by URL (`postgresql+psycopg://...`). The schema is created and changed only through Alembic (`upgrade`), whose
scripts ship inside this package, so it works from an installed wheel and from any working directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_FILENAME = "robustgrid.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a connection waits for the write lock


def default_sqlite_url(directory: str | Path) -> str:
    """`sqlite:///<abs directory>/robustgrid.db` (the directory is created by `make_engine`)."""
    return f"sqlite:///{(Path(directory).expanduser().resolve() / SQLITE_FILENAME).as_posix()}"


def _is_memory(url: URL) -> bool:
    db = url.database or ""
    return db in ("", ":memory:") or "mode=memory" in db


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer (a no-op for :memory:)
        cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def make_engine(url: str | URL) -> Engine:
    """An engine for `url`. SQLite: WAL + foreign keys on every connection (parent directory created);
    PostgreSQL: pre-ping pooled connections."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        kwargs: dict[str, Any] = {}
        if _is_memory(u):
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        elif u.database and not u.database.startswith("file:"):
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(u, pool_pre_ping=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine`; objects stay readable after commit (expire_on_commit=False)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations (no ini file, so the app's logging is untouched)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction for migrations. On SQLite foreign keys are off meanwhile (and on again after):
    a batch migration recreates a table, and DROP TABLE with foreign keys on would cascade to the child rows (SQLite
    ignores the pragma inside a transaction, so it is set before the transaction begins)."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                yield conn
                if sqlite:
                    bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if bad:
                        raise RuntimeError(f"the migration broke foreign keys: {bad[:5]}")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def _run(fn: Any, url_or_engine: str | URL | Engine | Connection, revision: str) -> None:
    cfg = alembic_config()
    if isinstance(url_or_engine, Connection):  # the caller's transaction (and its foreign-key setting)
        cfg.attributes["connection"] = url_or_engine
        fn(cfg, revision)
        return
    engine = url_or_engine if isinstance(url_or_engine, Engine) else make_engine(url_or_engine)
    try:
        with migration_connection(engine) as conn:
            cfg.attributes["connection"] = conn
            fn(cfg, revision)
    finally:
        if engine is not url_or_engine:
            engine.dispose()


def upgrade(url_or_engine: str | URL | Engine | Connection, revision: str = "head") -> None:
    """Migrate the database to `revision` (default: the newest). Idempotent."""
    _run(command.upgrade, url_or_engine, revision)


def downgrade(url_or_engine: str | URL | Engine | Connection, revision: str = "base") -> None:
    """Migrate down to `revision` (default: `base`, dropping every table but Alembic's version table)."""
    _run(command.downgrade, url_or_engine, revision)
