"""One error shape for bad input: 422 with the field and the reason (FastAPI's validation-error layout)."""

from __future__ import annotations

from fastapi import HTTPException


def unprocessable(field: str, reason: str) -> HTTPException:
    return HTTPException(status_code=422, detail=[{"loc": ["body", *field.split(".")], "msg": reason, "type": "value_error"}])


def not_found(what: str, ref: object) -> HTTPException:
    return HTTPException(status_code=404, detail=f"{what} {ref!r} not found")
