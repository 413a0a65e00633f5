"""Sweeps: submit, plan, list, inspect; cancel, resume, extend. Thin: each route calls one function and returns a
schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Sweep
from db.sweeps import ForbiddenTransition, SweepExists, get_sweep, list_sweeps, trial_status_counts
from db.trial_table import MAX_TRIALS_PAGE, list_trials_page
from search_spaces.spec import SpecError
from service.auth import Principal
from service.deps import DB_ID_MAX, PrincipalDep, SessionDep, SessionsDep, SettingsDep, SweepId, WriterDep
from service.errors import (
    BODY_ERRORS,
    CONFLICT,
    FORBIDDEN,
    NOT_FOUND,
    UNAVAILABLE,
    conflict,
    unavailable,
    unprocessable,
)
from service.launch_claim import new_claim
from service.schemas import PlanOut, PlanTotals, SweepDetail, SweepOut, SweepRequest, TrialOut
from service.submission import (
    IdempotencyKeyReused,
    IdempotencyKeyTaken,
    LaunchFailed,
    LifecycleError,
    LifecycleResult,
    RayUnavailable,
    cancel_sweep,
    data_root_of,
    extend_sweep,
    finish_interrupted,
    launch_sweep,
    plan_request,
    resume_sweep,
    store_sweep,
    sweep_for_key,
)
from service.visibility import visible_sweep

router = APIRouter(tags=["sweeps"])
PAGE_DEFAULT = 1000  # trials per page unless `limit` says otherwise
WRITE = FORBIDDEN | BODY_ERRORS | UNAVAILABLE  # what every write route may also answer


def visible(session: Session, sweep_id: int, principal: Principal) -> Sweep:
    """The sweep if the token may see it (service.visibility), else 404."""
    return visible_sweep(session, principal, sweep_id)


@router.post("/sweeps", status_code=201, response_model=SweepOut, responses=WRITE | CONFLICT)
def submit(req: SweepRequest, session: SessionDep, sessions: SessionsDep, settings: SettingsDep,
           principal: WriterDep, response: Response,
           idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None) -> SweepOut:
    """Validate, plan (limits first: `max_trials` before the grid is expanded), store the sweep with its owner (the
    token's) and all its trials in one transaction, then launch its Ray job (503 when Ray cannot be reached: the
    sweep stays stored, `failed` with the reason). With an `Idempotency-Key` header, a retried POST (the first
    answer lost, the API restarted) returns the sweep the first one stored (`Idempotent-Replayed: true`),
    launching it when the first attempt died before it could."""
    if idempotency_key is not None and (replay := _replay(sessions, settings, idempotency_key, principal, req)):
        response.headers["Idempotent-Replayed"] = "true"
        return replay
    claim = new_claim()  # stored with the sweep: a concurrent replay waits for this request's launch
    try:
        sweep, plan = store_sweep(session, req, settings, owner=principal.owner, idempotency_key=idempotency_key,
                                  launch_claim=claim)
    except SpecError as e:
        raise unprocessable(e.field, e.reason) from None
    except (SweepExists, IntegrityError) as e:  # a concurrent POST with the same key may have won the race
        if idempotency_key is not None and (replay := _replay(sessions, settings, idempotency_key, principal, req)):
            response.headers["Idempotent-Replayed"] = "true"
            return replay
        raise conflict(str(e) if isinstance(e, SweepExists) else "the sweep could not be stored") from None
    try:  # one launch at a time: a concurrent replay may be launching it (then this waits for that launch)
        launch_sweep(sessions, sweep.id, settings, data_root=data_root_of(req, settings), held_claim=claim)
    except LaunchFailed as e:  # the sweep is stored and marked failed with the reason
        raise unavailable(str(e)) from None
    session.refresh(sweep)
    return SweepOut.model_validate(sweep).model_copy(update={"totals": PlanTotals(**plan.totals()),
                                                             "counts": trial_status_counts(session, sweep_id=sweep.id)})


def _replay(sessions: Any, settings: Any, key: str, principal: Principal, req: SweepRequest) -> SweepOut | None:
    """The sweep stored under `key` (launched now if its first POST died before launching; if another request is
    launching it, after that launch ended: exactly one launch attempt however many replays race), or None. 409
    when the key is another owner's, 422 when it was used for another request body."""
    with sessions() as s:
        try:
            sweep = sweep_for_key(s, key=key, owner=principal.owner, req=req)
        except IdempotencyKeyTaken as e:
            raise conflict(str(e)) from None
        except IdempotencyKeyReused as e:
            raise unprocessable("idempotency-key", str(e).removeprefix("Idempotency-Key: "), where="header") from None
        except SpecError as e:
            raise unprocessable(e.field, e.reason) from None
        if sweep is None:
            return None
        sweep_id = sweep.id
    try:  # with no session open: a replay may wait for another request's launch
        finish_interrupted(sessions, sweep_id, settings)
    except LaunchFailed as e:
        raise unavailable(str(e)) from None
    with sessions() as s:
        return SweepOut.model_validate(get_sweep(s, sweep_id=sweep_id)).model_copy(
            update={"counts": trial_status_counts(s, sweep_id=sweep_id)})


@router.post("/plan", response_model=PlanOut, responses=BODY_ERRORS)
def plan(req: SweepRequest, settings: SettingsDep) -> PlanOut:
    try:
        _, p = plan_request(req, settings, require_data_root=False)  # a plan runs nothing
    except SpecError as e:
        raise unprocessable(e.field, e.reason) from None
    return PlanOut.model_validate({"totals": p.totals(), "trials": [t.row() for t in p.trials]})


@router.get("/sweeps", response_model=list[SweepOut])
def sweeps(session: SessionDep, principal: PrincipalDep) -> list[SweepOut]:
    """The token's sweeps and the imported reference sweeps (an admin token: all)."""
    return [SweepOut.model_validate(s).model_copy(update={"counts": trial_status_counts(session, sweep_id=s.id)})
            for s in list_sweeps(session, visible_to=principal.visible_owner)]


@router.get("/sweeps/{sweep_id}", response_model=SweepDetail, responses=NOT_FOUND)
def sweep(sweep_id: SweepId, session: SessionDep, principal: PrincipalDep) -> SweepDetail:
    s = visible(session, sweep_id, principal)
    return SweepDetail.model_validate(s).model_copy(update={"counts": trial_status_counts(session, sweep_id=sweep_id)})


@router.get("/sweeps/{sweep_id}/trials", response_model=list[TrialOut],
            responses=NOT_FOUND | {200: {"headers": {"X-Total-Count": {"description": "trials on all pages",
                                                                       "schema": {"type": "integer"}}}}})
def trials(sweep_id: SweepId, session: SessionDep, principal: PrincipalDep, response: Response,
           limit: int = Query(PAGE_DEFAULT, ge=1, le=MAX_TRIALS_PAGE, description=f"page size (max {MAX_TRIALS_PAGE})"),
           offset: int = Query(0, ge=0, le=DB_ID_MAX)) -> list[TrialOut]:
    """The sweep's trials in idx order, one page: `limit` (default 1000, at most 10000) from `offset`, with the
    headers `X-Total-Count` (trials on all pages), `X-Limit` and `X-Offset`, as /results."""
    visible(session, sweep_id, principal)
    page = list_trials_page(session, sweep_id=sweep_id, limit=limit, offset=offset)
    response.headers.update({"X-Total-Count": str(page.total), "X-Limit": str(limit), "X-Offset": str(offset)})
    return [TrialOut.model_validate(t) for t in page.rows]


class ExtendRequest(BaseModel):
    """A patch of SweepSpec fields applied to the stored spec, e.g. {"patch": {"seeds": [0, 1]}}."""

    model_config = ConfigDict(extra="forbid")

    patch: dict[str, Any]


class LifecycleOut(BaseModel):
    sweep_id: int
    status: str  # the sweep's status afterwards
    ray_job_id: str | None  # the job stopped (cancel) or submitted (resume, extend)
    job_status: str | None  # the stopped job's final state (cancel)
    trials: list[int]  # ids of the trials cancelled (cancel), requeued (resume) or added (extend)


def _http(e: LifecycleError) -> HTTPException:
    if e.status_code == 422:
        return unprocessable(e.field, e.reason)
    return HTTPException(status_code=e.status_code, detail=e.reason if e.status_code == 404 else str(e))


def _lifecycle(action: Callable[[], LifecycleResult]) -> LifecycleOut:
    """Run a lifecycle action: its refusals as 404/409/422, a Ray head that cannot be asked as 503."""
    try:
        return LifecycleOut(**asdict(action()))
    except LifecycleError as e:
        raise _http(e) from None
    except (RayUnavailable, LaunchFailed) as e:
        raise unavailable(str(e)) from None
    except ForbiddenTransition as e:  # the sweep changed state under the request (e.g. its driver finished)
        raise conflict(str(e)) from None


LIFECYCLE = WRITE | NOT_FOUND | CONFLICT


@router.post("/sweeps/{sweep_id}/cancel", response_model=LifecycleOut, responses=LIFECYCLE)
def cancel(sweep_id: SweepId, session: SessionDep, sessions: SessionsDep, settings: SettingsDep,
           principal: WriterDep) -> LifecycleOut:
    visible(session, sweep_id, principal)
    return _lifecycle(lambda: cancel_sweep(sessions, sweep_id, settings))


@router.post("/sweeps/{sweep_id}/resume", response_model=LifecycleOut, responses=LIFECYCLE)
def resume(sweep_id: SweepId, session: SessionDep, sessions: SessionsDep, settings: SettingsDep,
           principal: WriterDep) -> LifecycleOut:
    visible(session, sweep_id, principal)
    return _lifecycle(lambda: resume_sweep(sessions, sweep_id, settings))


@router.post("/sweeps/{sweep_id}/extend", status_code=201, response_model=LifecycleOut, responses=LIFECYCLE)
def extend(sweep_id: SweepId, req: ExtendRequest, session: SessionDep, sessions: SessionsDep, settings: SettingsDep,
           principal: WriterDep) -> LifecycleOut:
    visible(session, sweep_id, principal)
    return _lifecycle(lambda: extend_sweep(sessions, sweep_id, req.patch, settings))
