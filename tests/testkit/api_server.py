"""The API served by uvicorn in a background thread, for tests that talk HTTP to a running service."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from service.app import create_app
from service.settings import Settings
from testkit.api_client import new_token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _DefaultToken:
    """Adds `Authorization: Bearer <token>` to requests that carry none, so HTTP tests act as one token's owner
    without each client saying so (the token still goes through the API's real authentication)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.header = app, (b"authorization", f"Bearer {token}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not any(k == b"authorization" for k, _ in scope["headers"]):
            scope = {**scope, "headers": [*scope["headers"], self.header]}
        await self.app(scope, receive, send)


@contextmanager
def running_api(settings: Settings, *, scope: str | None = "admin") -> Iterator[str]:
    """Serve create_app(settings) on settings.api_port until the block ends; yields the /api/v1 base URL. Requests
    without an Authorization header act as a new token of `scope`. scope None serves the app as it is, adding
    nothing to any request: what a browser test needs (it logs in through the form and holds only the cookie)."""
    app = create_app(settings)
    served: ASGIApp = app if scope is None else _DefaultToken(app, new_token(app, scope=scope))
    server = uvicorn.Server(uvicorn.Config(served, host="127.0.0.1", port=settings.api_port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.api_port}/api/v1"
    finally:
        server.should_exit = True
        thread.join(10)
