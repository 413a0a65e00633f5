"""The API's error answers: bad input is 422 with the field and the reason (FastAPI's validation-error layout); the
others carry one sentence in `detail`."""

from __future__ import annotations

from fastapi import HTTPException


def unprocessable(field: str, reason: str) -> HTTPException:
    return HTTPException(status_code=422, detail=[{"loc": ["body", *field.split(".")], "msg": reason, "type": "value_error"}])


def not_found(what: str, ref: object) -> HTTPException:
    return HTTPException(status_code=404, detail=f"{what} {ref!r} not found")


def conflict(reason: str) -> HTTPException:
    """409: the request collides with what is stored (a taken name, a sweep whose state does not allow it)."""
    return HTTPException(status_code=409, detail=reason)


def unavailable(reason: str) -> HTTPException:
    """503: a service we depend on (the Ray head) cannot be asked; nothing has been changed."""
    return HTTPException(status_code=503, detail=reason)
