"""An in-process client of the API (FastAPI's TestClient) for tests; the one place tests build one, so a change in
how the API authenticates changes here once. The client sends an API token (admin by default) on every request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import issue_token
from service.settings import Settings


def new_token(app: FastAPI, *, scope: str = "admin", owner: str = "tests") -> str:
    """A fresh token of `scope` for `owner` in the app's store (the token itself, as `token create` prints it)."""
    with app.state.sessions.begin() as session:
        return issue_token(session, scope=scope, owner=owner)[1]


@contextmanager
def api_client(settings: Settings, *, scope: str | None = "admin", owner: str = "tests") -> Iterator[TestClient]:
    """A TestClient on create_app(settings) (start-up and shut-down run) sending `Authorization: Bearer <token>`
    of a new token of `scope` for `owner`; scope None sends no token."""
    app = create_app(settings)
    with TestClient(app) as client:
        if scope is not None:
            client.headers["Authorization"] = f"Bearer {new_token(app, scope=scope, owner=owner)}"
        yield client
