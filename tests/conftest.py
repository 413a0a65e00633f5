"""Shared fixtures. Keep this small: package-specific fixtures live next to their tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

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
