"""An in-process client of the API (FastAPI's TestClient) for tests; the one place tests build one, so a change in
how the API authenticates changes here once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings


@contextmanager
def api_client(settings: Settings) -> Iterator[TestClient]:
    """A TestClient on create_app(settings) (start-up and shut-down run)."""
    with TestClient(create_app(settings)) as client:
        yield client
