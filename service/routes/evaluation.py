"""Post-hoc evaluation of a sweep's stored checkpoints: `POST /sweeps/{id}/evaluate`. Thin: one call of
service.evaluation, its result as a schema."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

from db.contract import CHECKPOINTS, Checkpoint
from service.deps import DbId, SessionsDep, SettingsDep, SweepId, WriterDep
from service.errors import (
    BODY_ERRORS,
    CONFLICT,
    FORBIDDEN,
    NOT_FOUND,
    UNAVAILABLE,
    conflict,
    not_found,
    unavailable,
    unprocessable,
)
from service.evaluation import EvaluationError, evaluate_sweep
from service.launcher import RayUnavailable

router = APIRouter(tags=["evaluation"])


class EvaluateRequest(BaseModel):
    """Which checkpoints to re-attack and with what. No `trials`: the Pareto front of params vs PGD-20 robust
    accuracy (best checkpoints), widened by the trials within two standard errors of it."""

    model_config = ConfigDict(extra="forbid")

    attack: str = Field("autoattack", description="attack key: autoattack, apgd-ce, apgd-t, fab, square, fgsm, "
                                                  "pgd<steps>, cw<steps>")
    trials: list[DbId] | None = Field(None, description="trial ids of the sweep; None: the widened front")
    checkpoints: list[Checkpoint] = Field(list(CHECKPOINTS), description="best and/or last")
    eps: list[FiniteFloat] | None = Field(None, description="front: only trials at these radii ([0, 1] pixel units)")
    force: bool = Field(False, description="re-run evaluations whose row exists")


class EvaluateOut(BaseModel):
    sweep_id: int
    attack: str
    checkpoints: list[str]
    selection: str  # front | trials
    trials: list[int]
    n_candidates: int
    spared: int
    existing: int
    sigmas: float
    job_id: str | None  # None: every evaluation already has its row


@router.post("/sweeps/{sweep_id}/evaluate", status_code=202, response_model=EvaluateOut,
             responses=FORBIDDEN | NOT_FOUND | CONFLICT | UNAVAILABLE | BODY_ERRORS)
def evaluate(sweep_id: SweepId, req: EvaluateRequest, sessions: SessionsDep, settings: SettingsDep,
             principal: WriterDep) -> EvaluateOut:
    """Re-attack stored best/last checkpoints as a Ray job (one task per trial and checkpoint); the rows appear
    under the attack's key in /results, the CSV and /pareto?attack=... . Submitting again resumes an interrupted
    evaluation (finished rows are skipped, an unfinished one continues at its first unfinished batch)."""
    try:
        result = evaluate_sweep(sessions, settings, sweep_id=sweep_id, attack=req.attack, trials=req.trials,
                                checkpoints=tuple(req.checkpoints), eps=req.eps, force=req.force,
                                visible=principal.sees)
    except EvaluationError as e:
        if e.status == 404:
            raise not_found("sweep", sweep_id) from None
        raise (conflict(e.reason) if e.status == 409 else unprocessable(e.field, e.reason)) from None
    except RayUnavailable as e:
        raise unavailable(str(e)) from None
    d = result.to_dict()
    d.pop("data_root")
    return EvaluateOut(**d)
