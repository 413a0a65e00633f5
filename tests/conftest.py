"""Shared fixtures. Keep this small: package-specific fixtures live next to their tests."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

# Property tests run the same examples on every run (CI stays reproducible; a run is not a lottery) and carry no
# per-example deadline (two loaded cores). `HYPOTHESIS_PROFILE=explore` searches afresh.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None)
hypothesis_settings.register_profile("explore", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The cifar10-jpeg ImageFolder tree: $ROBUSTGRID_TEST_DATA_ROOT, else <repo>/.data/cifar10-jpeg."""
    root = Path(os.environ.get("ROBUSTGRID_TEST_DATA_ROOT") or REPO / ".data" / "cifar10-jpeg")
    if not (root / "train").is_dir() and not (root / "cifar10-jpeg" / "train").is_dir():
        pytest.skip(
            f"no cifar10-jpeg images at {root}: unpack shared/data/cifar10-jpeg.tar.gz there "
            "or set ROBUSTGRID_TEST_DATA_ROOT"
        )
    return root


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread in the test process (two cores are shared with Ray's workers and other test runs); a
    module opts in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A private local Ray runtime for one test module (2 CPUs, no dashboard; a short temp dir for its sockets)."""
    import ray

    tmp = tempfile.mkdtemp(prefix="rg-ray-")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=tmp)
    yield
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------- the two database backends (tests/db and the HTTP tests)

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
