"""Sweeps: submit, plan, list, inspect; cancel, resume, extend. Thin: each route calls one function and returns a
schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict

from db.sweeps import ForbiddenTransition, SweepExists, get_sweep, list_sweeps, list_trials, trial_status_counts
from search_spaces.spec import SpecError
from service.deps import SessionDep, SessionsDep, SettingsDep
from service.errors import conflict, not_found, unavailable, unprocessable
from service.schemas import PlanOut, PlanTotals, SweepDetail, SweepOut, SweepRequest, TrialOut
from service.submission import (
    LaunchFailed,
    LifecycleError,
    LifecycleResult,
    RayUnavailable,
    cancel_sweep,
    data_root_of,
    extend_sweep,
    launch_sweep,
    plan_request,
    resume_sweep,
    store_sweep,
)

router = APIRouter(tags=["sweeps"])


@router.post("/sweeps", status_code=201, response_model=SweepOut)
def submit(req: SweepRequest, session: SessionDep, sessions: SessionsDep, settings: SettingsDep) -> SweepOut:
    try:
        sweep, plan = store_sweep(session, req, settings)
    except SpecError as e:
        raise unprocessable(e.field, e.reason) from None
    except SweepExists as e:
        raise conflict(str(e)) from None
    try:
        launch_sweep(sessions, sweep.id, settings, data_root=data_root_of(req, settings))
    except LaunchFailed as e:  # the sweep is stored and marked failed with the reason
        raise unavailable(str(e)) from None
    session.refresh(sweep)
    return SweepOut.model_validate(sweep).model_copy(update={"totals": PlanTotals(**plan.totals()),
                                                             "counts": {"queued": sweep.n_trials}})


@router.post("/plan", response_model=PlanOut)
def plan(req: SweepRequest, settings: SettingsDep) -> PlanOut:
    try:
        _, p = plan_request(req, settings)
    except SpecError as e:
        raise unprocessable(e.field, e.reason) from None
    return PlanOut.model_validate({"totals": p.totals(), "trials": [t.row() for t in p.trials]})


@router.get("/sweeps", response_model=list[SweepOut])
def sweeps(session: SessionDep) -> list[SweepOut]:
    return [SweepOut.model_validate(s) for s in list_sweeps(session)]


@router.get("/sweeps/{sweep_id}", response_model=SweepDetail)
def sweep(sweep_id: int, session: SessionDep) -> SweepDetail:
    s = get_sweep(session, sweep_id=sweep_id)
    if s is None:
        raise not_found("sweep", sweep_id)
    return SweepDetail.model_validate(s).model_copy(update={"counts": trial_status_counts(session, sweep_id=sweep_id)})


@router.get("/sweeps/{sweep_id}/trials", response_model=list[TrialOut])
def trials(sweep_id: int, session: SessionDep) -> list[TrialOut]:
    if get_sweep(session, sweep_id=sweep_id) is None:
        raise not_found("sweep", sweep_id)
    return [TrialOut.model_validate(t) for t in list_trials(session, sweep_id=sweep_id)]


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


@router.post("/sweeps/{sweep_id}/cancel", response_model=LifecycleOut)
def cancel(sweep_id: int, sessions: SessionsDep, settings: SettingsDep) -> LifecycleOut:
    return _lifecycle(lambda: cancel_sweep(sessions, sweep_id, settings))


@router.post("/sweeps/{sweep_id}/resume", response_model=LifecycleOut)
def resume(sweep_id: int, sessions: SessionsDep, settings: SettingsDep) -> LifecycleOut:
    return _lifecycle(lambda: resume_sweep(sessions, sweep_id, settings))


@router.post("/sweeps/{sweep_id}/extend", status_code=201, response_model=LifecycleOut)
def extend(sweep_id: int, req: ExtendRequest, sessions: SessionsDep, settings: SettingsDep) -> LifecycleOut:
    return _lifecycle(lambda: extend_sweep(sessions, sweep_id, req.patch, settings))
