"""What a token may see: its owner's sweeps and the imported reference sweeps; an admin token sees every sweep
(service.auth). One place for it, used by every route that reads a sweep, its trials or its rows: a sweep or trial
the token may not see answers 404, exactly like one that does not exist (nothing tells that it exists)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from db.fields import INT64_MAX, id_in_text
from db.models import Sweep, Trial
from db.sweeps import get_sweep, get_sweep_by_name_or_id, get_trial, list_sweeps
from service.auth import Principal
from service.errors import not_found, unprocessable


def visible_sweep(session: Session, principal: Principal, sweep_ref: int | str) -> Sweep:
    """The sweep (id, or id or name) if the token may see it, else 404."""
    if isinstance(sweep_ref, int) and not 0 < sweep_ref <= INT64_MAX:  # no such id (and SQLite cannot bind it)
        raise not_found("sweep", sweep_ref)
    s = get_sweep(session, sweep_id=sweep_ref) if isinstance(sweep_ref, int) else \
        get_sweep_by_name_or_id(session, ref=sweep_ref)
    if s is None or not principal.sees(s):
        raise not_found("sweep", sweep_ref)
    return s


def visible_trial(session: Session, principal: Principal, trial_id: int) -> Trial:
    if not 0 < trial_id <= INT64_MAX:
        raise not_found("trial", trial_id)
    t = get_trial(session, trial_id=trial_id)
    if t is None or not principal.sees(t.sweep):
        raise not_found("trial", trial_id)
    return t


def scoped_filters(session: Session, principal: Principal, filters: dict[str, Any]) -> dict[str, Any]:
    """Result filters narrowed to the sweeps the token may see (unchanged for an admin)."""
    if principal.is_admin:
        return filters
    return {**filters, "sweep_ids": [s.id for s in list_sweeps(session, visible_to=principal.owner)]}


def check_visible(session: Session, principal: Principal, sweep_refs: list[Any], *, field: str = "reference") -> None:
    """Every sweep (an id, or an id or name as a query gives it) is visible to the token, else 404. A query value
    written as digits that no database id can be (`³`, whose `isdigit` is true; 2**64) is a bad `field`: 422."""
    for ref in sweep_refs:
        if isinstance(ref, int) or not str(ref).strip().isdigit():
            visible_sweep(session, principal, ref)
        elif (sweep_id := id_in_text(str(ref))) is not None:
            visible_sweep(session, principal, sweep_id)
        else:
            raise unprocessable(field, f"{ref!r} is not a sweep id (ASCII digits, 1 to {INT64_MAX}) or name",
                                where="query")

