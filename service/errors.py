"""The API's error answers: bad input is 422 with the field and the reason (FastAPI's validation-error layout); the
others carry one sentence in `detail`."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from service.query_grammar import mismatch_reason


def unprocessable(field: str, reason: str, where: str = "body") -> HTTPException:
    """422 naming the field (dotted path) and where it was: the body, a header, the query."""
    return HTTPException(status_code=422, detail=[{"loc": [where, *field.split(".")], "msg": reason,
                                                   "type": "value_error"}])


def not_found(what: str, ref: object) -> HTTPException:
    return HTTPException(status_code=404, detail=f"{what} {ref!r} not found")


def conflict(reason: str) -> HTTPException:
    """409: the request collides with what is stored (a taken name, a sweep whose state does not allow it)."""
    return HTTPException(status_code=409, detail=reason)


def unavailable(reason: str) -> HTTPException:
    """503: a service we depend on (the Ray head) cannot be asked; nothing has been changed."""
    return HTTPException(status_code=503, detail=reason)


# ------------------------------------------------------------------------------------ documented answers, short bodies

INPUT_ECHO_CHARS = 200  # a validation error quotes at most this much of the offending input


class ErrorOut(BaseModel):
    """Every error answer but 422: one sentence."""

    detail: str


def _described(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: _described("No API token, or an unknown or revoked one")}
FORBIDDEN: dict[int | str, dict[str, Any]] = {403: _described("The token's scope does not allow this")}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _described("No such sweep or trial (or not visible to the token)")}
CONFLICT: dict[int | str, dict[str, Any]] = {409: _described("The request collides with what is stored")}
TOO_LARGE: dict[int | str, dict[str, Any]] = {413: _described("The request body exceeds max_body_bytes")}
BODY_ERRORS = {400: _described("The request body cannot be read as JSON (e.g. it is not UTF-8)")} | TOO_LARGE
UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: _described("The Ray head cannot be reached")}


def short_input(value: Any, limit: int = INPUT_ECHO_CHARS) -> Any:
    """`value` as a validation error may quote it: unchanged when short, else the start of its JSON text and how
    long it was, so an error never echoes a large input back. Text that cannot be written as UTF-8 (a lone surrogate
    from a JSON `\\ud800` escape) is quoted with backslash escapes instead of failing the answer."""
    text = value if isinstance(value, str) else json.dumps(jsonable_encoder(value), default=str, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = value = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= limit:
        return value
    return f"{text[:limit]}... ({len(text):,} characters)"


def shortened(errors: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        err = dict(err)
        if "input" in err:
            err["input"] = short_input(err["input"])
        if "ctx" in err:
            err["ctx"] = {k: short_input(v if isinstance(v, int | float | str | None) else str(v))
                          for k, v in err["ctx"].items()}
        out.append(err)
    return out


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 layout (detail: [{loc, msg, type, input}]) with every input cut to INPUT_ECHO_CHARS."""
    assert isinstance(exc, RequestValidationError)
    if any(e.get("loc", ("",))[0] == "path" for e in exc.errors()) and request.method not in (
            methods := allowed_methods(request)) and methods:
        # GET /sweeps/import reached GET /sweeps/{sweep_id} ("import" is no id), but the path is POST's alone
        return JSONResponse(status_code=405, content={"detail": "Method Not Allowed"},
                            headers={"Allow": ", ".join(methods)})
    errors = [_with_reason(e) for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(shortened(errors))})


def _with_reason(error: dict[str, Any]) -> dict[str, Any]:
    """A pattern mismatch of a query grammar (service.query_grammar) says what is wrong, not which regex failed."""
    if error.get("type") == "string_pattern_mismatch":
        reason = mismatch_reason((error.get("ctx") or {}).get("pattern", ""), error.get("input"))
        if reason is not None:
            return {**error, "msg": reason}
    return error


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path answers (Starlette's 405 names only the first route's: `OPTIONS
    /api/v1/sweeps` said `Allow: POST`, though GET lists the sweeps). For an API path, from the OpenAPI schema,
    the most literal template winning (/sweeps/import is POST alone, not also GET /sweeps/{sweep_id}); for a page,
    each method is matched as a request of it."""
    templates = [(t.count("{"), ops) for t, ops in request.app.openapi()["paths"].items()
                 if re.fullmatch(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(t)), request.url.path)]
    if templates:
        fewest = min(n for n, _ in templates)
        return [m for m in METHODS if any(m.lower() in ops for n, ops in templates if n == fewest)]
    routes = [r for r in request.app.router.routes if not isinstance(r, Mount)]  # static files answer their own
    return [m for m in METHODS if any(r.matches({**request.scope, "method": m})[0] == Match.FULL for r in routes)]


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer to an HTTPException, with a 405's `Allow` listing every method of the path."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405 and (methods := allowed_methods(request)):
        exc = StarletteHTTPException(405, detail=exc.detail, headers={**(exc.headers or {}), "Allow": ", ".join(methods)})
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
