"""Post-hoc evaluation of a sweep's stored checkpoints, as the API and the CLI ask for it: which trials, which
attack, which checkpoints; then one Ray job (service.launcher.submit_evaluation_job -> workers.posthoc) that
appends a result row per (trial, checkpoint) under the attack's canonical key.

Choosing the trials: the ones named, or by default the Pareto front of params vs PGD-20 robust accuracy of the best
checkpoints, widened by the trials within two binomial standard errors of it (db.front, one front per eps and norm),
so that a trial whose place behind the front is noise is re-attacked too. Resumability: the job skips a (trial,
checkpoint) whose row exists (unless `force`) and continues an interrupted evaluation at its first unfinished batch
(workers.posthoc's progress files); submitting the same evaluation again is how an interrupted one is resumed. The
plan says how many evaluations already have their row (`existing`) and how many trials the front spared.
No torch or ray here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.contract import CHECKPOINTS, DEFAULT_ATTACK, check_attack_key
from db.front import FRONT_SIGMAS, front_trials
from db.models import FinalResult, Sweep, Trial
from search_spaces.config import check_posthoc_attack
from search_spaces.stored import StoredSweep
from service.settings import Settings


class EvaluationError(Exception):
    """A request that cannot be planned: HTTP `status`, the `field` it is about and the reason."""

    def __init__(self, status: int, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.status, self.field, self.reason = status, field, reason


@dataclass(frozen=True)
class EvaluationPlan:
    sweep_id: int
    attack: str  # canonical key
    checkpoints: tuple[str, ...]
    selection: str  # "front" (widened by FRONT_SIGMAS standard errors) | "trials" (named)
    trials: list[int]  # the trials to re-attack
    n_candidates: int  # front: trials with a PGD-20 best row; trials: the trials named
    spared: int  # trials the selection leaves out (front: candidates off the widened front)
    existing: int  # (trial, checkpoint) pairs that already have their row (skipped unless force)
    data_root: str | None


def _checkpoints(checkpoints: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    bad = [c for c in checkpoints if c not in CHECKPOINTS]
    if not checkpoints or bad:
        raise EvaluationError(422, "checkpoints", f"expected one or more of {', '.join(CHECKPOINTS)}, got "
                                                  f"{list(checkpoints)}")
    return tuple(dict.fromkeys(checkpoints))


def _attack(attack: str) -> str:
    try:
        return check_posthoc_attack(check_attack_key(attack))
    except ValueError as e:
        raise EvaluationError(422, "attack", str(e).removeprefix("attack: ")) from None


def plan_evaluation(session: Session, *, sweep: Sweep, attack: str, trials: list[int] | None = None,
                    checkpoints: tuple[str, ...] = CHECKPOINTS, eps: list[float] | None = None) -> EvaluationPlan:
    """The evaluation of `sweep` under `attack`: the `trials` named (each must be a completed trial of the sweep)
    or the widened front of the best PGD-20 rows (`eps` keeps only those radii). EvaluationError (422) naming the
    field for a bad attack, checkpoint or trial, or a sweep without rows to take a front from."""
    key, checkpoints = _attack(attack), _checkpoints(checkpoints)
    rows = session.execute(select(Trial.id, Trial.status).where(Trial.sweep_id == sweep.id)).all()
    status = dict(rows)
    if trials is not None:
        if not trials:
            raise EvaluationError(422, "trials", "empty: name one or more trial ids, or ask for the front")
        foreign = [t for t in trials if t not in status]
        if foreign:
            raise EvaluationError(422, "trials", f"{foreign} are not trials of sweep {sweep.id}")
        unfinished = [t for t in trials if status[t] != "completed"]
        if unfinished:
            raise EvaluationError(422, "trials", f"{unfinished} are not completed (no final checkpoint to attack)")
        chosen, n, selection = sorted(set(trials)), len(set(trials)), "trials"
    else:
        chosen, n = front_trials(session, sweep_id=sweep.id, attack=DEFAULT_ATTACK, eps=eps)
        selection = "front"
        if not chosen:
            where = f" at eps {eps}" if eps else ""
            raise EvaluationError(422, "front", f"sweep {sweep.id} has no best-checkpoint {DEFAULT_ATTACK} rows with "
                                                f"counts{where} to take a front from; name the trials")
    existing = session.execute(select(FinalResult.trial_id, FinalResult.checkpoint).where(
        FinalResult.trial_id.in_(chosen), FinalResult.attack == key, FinalResult.checkpoint.in_(checkpoints))).all()
    return EvaluationPlan(sweep.id, key, checkpoints, selection, chosen, n, n - len(chosen), len(existing),
                          StoredSweep.model_validate(sweep.spec).data_root if sweep.spec else None)


@dataclass(frozen=True)
class EvaluationResult:
    plan: EvaluationPlan
    job_id: str | None  # None: nothing to run (every evaluation has its row and force was not asked)

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.__dict__, "sigmas": FRONT_SIGMAS, "job_id": self.job_id}


def evaluate_sweep(make_session: sessionmaker[Session], settings: Settings, *, sweep_id: int, attack: str,
                   trials: list[int] | None = None, checkpoints: tuple[str, ...] = CHECKPOINTS,
                   eps: list[float] | None = None, force: bool = False, visible: Any = None) -> EvaluationResult:
    """Plan, then submit the evaluation job (starting a local Ray head when the settings name no cluster).
    `visible(sweep) -> bool` hides sweeps the caller may not see (404). EvaluationError: 404 unknown sweep,
    409 a sweep still queued or running, 422 a bad request; the launcher's RayUnavailable when Ray is down."""
    with make_session() as s:
        sweep = s.get(Sweep, sweep_id)
        if sweep is None or (visible is not None and not visible(sweep)):
            raise EvaluationError(404, "sweep", f"no sweep {sweep_id}")
        if sweep.imported:
            raise EvaluationError(422, "sweep", f"sweep {sweep_id} is an imported reference: it has no checkpoints")
        if sweep.status in ("queued", "running", "cancelling"):
            raise EvaluationError(409, "status", f"sweep {sweep_id} is {sweep.status}: evaluate it once it finished")
        plan = plan_evaluation(s, sweep=sweep, attack=attack, trials=trials, checkpoints=checkpoints, eps=eps)
    if plan.existing == len(plan.trials) * len(plan.checkpoints) and not force:
        return EvaluationResult(plan, None)
    from service import launcher

    cluster = launcher.ensure_ray_head(settings)
    job_id = launcher.submit_evaluation_job(settings, cluster, sweep_id=plan.sweep_id, trial_ids=plan.trials,
                                            attack=plan.attack, checkpoints=plan.checkpoints,
                                            data_root=plan.data_root, force=force)
    return EvaluationResult(plan, job_id)
