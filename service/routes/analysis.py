"""Study analyses of a stored sweep: eps* (science.md, Study C). Thin: one call, one schema."""

from __future__ import annotations

from fastapi import APIRouter

from db.sweeps import NotFound
from search_spaces.spec import SpecError
from service.deps import PrincipalDep, SessionDep, SweepId
from service.epsilon_star import epsilon_star_for_sweep
from service.errors import CONFLICT, NOT_FOUND, conflict, not_found
from service.schemas import EpsilonStarOut
from service.visibility import visible_sweep

router = APIRouter(tags=["analysis"])


@router.get("/sweeps/{sweep_id}/epsilon-star", response_model=EpsilonStarOut, responses=NOT_FOUND | CONFLICT)
def epsilon_star(sweep_id: SweepId, session: SessionDep, principal: PrincipalDep) -> EpsilonStarOut:
    """eps* per group from scratch (interpolated), the fast approximation from fine-tuning runs side by side, and
    the FGSM catastrophic-overfitting flag per run. 409 when the sweep has no eps = 0 run to measure it from (the
    request is fine; the sweep cannot answer it)."""
    visible_sweep(session, principal, sweep_id)
    try:
        groups = epsilon_star_for_sweep(session, sweep_ref=sweep_id)
    except NotFound:
        raise not_found("sweep", sweep_id) from None
    except SpecError as e:
        raise conflict(f"sweep {sweep_id}: {e.reason}") from None
    return EpsilonStarOut.model_validate({"sweep_id": sweep_id, "groups": groups})
