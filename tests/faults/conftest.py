"""Fixtures of the fault-tolerance tests: a private local Ray runtime (short socket paths under /tmp)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    tmp = tempfile.mkdtemp(prefix="rgft-")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=tmp)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every fault test runs with one torch thread (tests/conftest.py)."""
