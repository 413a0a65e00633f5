"""What the API refuses before doing any work: request bodies over `max_body_bytes` (413, from the Content-Length
header or, when a streamed body outgrows it, from the bytes read), sweeps whose axes multiply to more than
`max_trials` configurations (422, counted from the spec's axis lengths without expanding the grid), and
descriptions over `max_description_chars` (422). Every answer names the limit and the setting."""

from __future__ import annotations

import json
import math

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from search_spaces.spec import AXES, SpecError, SweepSpec
from service.settings import Settings


def too_large(max_bytes: int) -> HTTPException:
    return HTTPException(status_code=413, detail=f"the request body exceeds the limit of {max_bytes:,} bytes "
                                                 f"(setting max_body_bytes)")


class BodySizeLimit:
    """Pure ASGI middleware: 413 for a body over `max_bytes`, before the route reads it when Content-Length says
    so, else as soon as the bytes received pass the limit (chunked or lying clients)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _answer_413(send, self.max_bytes)
            return
        received, started = 0, False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(self.max_bytes)  # FastAPI re-raises it from its body reader: a JSON 413
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except HTTPException as e:  # read outside a route's exception handling (e.g. by another middleware)
            if e.status_code != 413 or started:
                raise
            await _answer_413(send, self.max_bytes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer_413(send: Send, max_bytes: int) -> None:
    body = json.dumps({"detail": too_large(max_bytes).detail}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def grid_size(spec: SweepSpec) -> int:
    """How many configurations the spec's axes multiply to (before duplicates are removed): per-stage depth and
    width lists multiply across stages, zipped axes count once per group. Arithmetic on list lengths only."""
    lengths = {
        "depths": math.prod(len(stage) for stage in spec.depths),
        "widths": math.prod(len(stage) for stage in spec.widths),
        "gamma": len(spec.gamma), "method": len(spec.method), "lam": len(spec.lam or [None]), "eps": len(spec.eps),
        "norm": len(spec.norm), "n_train": 1 if spec.data_fraction is not None else len(spec.n_train),
        "seeds": len(spec.seeds),
    }
    zipped = {axis for group in spec.zip for axis in group}
    groups = [max(lengths[a] for a in group) for group in spec.zip if group]
    return math.prod(groups) * math.prod(n for axis, n in lengths.items() if axis in AXES and axis not in zipped)


def check_spec_limits(spec: SweepSpec, settings: Settings) -> None:
    """SpecError naming `max_trials` or `description` when the spec is over a limit; costs microseconds."""
    if len(spec.description) > settings.max_description_chars:
        raise SpecError("description", f"is {len(spec.description):,} characters long; the limit is "
                                       f"{settings.max_description_chars:,} (setting max_description_chars)")
    n = grid_size(spec)
    if n > settings.max_trials:
        raise SpecError("max_trials", f"the spec's axes multiply to {n:,} configurations, more than the limit of "
                                      f"{settings.max_trials:,} trials (setting max_trials)")
