"""Sweeps: submit, plan, list, inspect; cancel, resume, extend. Thin: each route calls one function and returns a
schema."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict

from db.sweeps import get_sweep, list_sweeps, list_trials, trial_status_counts
from search_spaces.spec import SpecError
from service.deps import SessionDep, SessionsDep, SettingsDep
from service.errors import not_found, unprocessable
from service.schemas import PlanOut, PlanTotals, SweepDetail, SweepOut, SweepRequest, TrialOut
from service.submission import (
    LifecycleError,
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
    try:
        launch_sweep(sessions, sweep.id, settings, data_root=data_root_of(req, settings))
    except Exception as e:  # noqa: BLE001 - the sweep is stored and marked failed; say why
        raise HTTPException(status_code=503, detail=f"sweep {sweep.id} stored but its Ray job could not start: {e}") from e
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


@router.post("/sweeps/{sweep_id}/cancel", response_model=LifecycleOut)
def cancel(sweep_id: int, sessions: SessionsDep, settings: SettingsDep) -> LifecycleOut:
    try:
        return LifecycleOut(**asdict(cancel_sweep(sessions, sweep_id, settings)))
    except LifecycleError as e:
        raise _http(e) from None


@router.post("/sweeps/{sweep_id}/resume", response_model=LifecycleOut)
def resume(sweep_id: int, sessions: SessionsDep, settings: SettingsDep) -> LifecycleOut:
    try:
        return LifecycleOut(**asdict(resume_sweep(sessions, sweep_id, settings)))
    except LifecycleError as e:
        raise _http(e) from None


@router.post("/sweeps/{sweep_id}/extend", status_code=201, response_model=LifecycleOut)
def extend(sweep_id: int, req: ExtendRequest, sessions: SessionsDep, settings: SettingsDep) -> LifecycleOut:
    try:
        return LifecycleOut(**asdict(extend_sweep(sessions, sweep_id, req.patch, settings)))
    except LifecycleError as e:
        raise _http(e) from None
