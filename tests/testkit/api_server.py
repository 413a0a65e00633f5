"""The API served by uvicorn in a background thread, for tests that talk HTTP to a running service."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from service.app import create_app
from service.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_api(settings: Settings) -> Iterator[str]:
    """Serve create_app(settings) on settings.api_port until the block ends; yields the /api/v1 base URL."""
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.api_port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.api_port}/api/v1"
    finally:
        server.should_exit = True
        thread.join(10)
