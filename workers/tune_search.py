"""Ray Tune pieces of a search sweep (search_spaces.search): an Optuna sampler over the expanded grid that never
runs a configuration twice and stays within a budget, and ASHA that stops trials at rungs and says why.

- `CandidateSearcher` wraps `ray.tune.search.optuna.OptunaSearch` (TPESampler or NSGAIISampler over one integer
  axis per varying hyperparameter). A sampled point is mapped to its stored configuration; before the trial runs,
  its row is inserted into the database (so every trial row exists before it runs) and the trial gets that row's
  id. A point already taken is told back to Optuna (its known result, or a failure while it still runs) and the
  sampler asked again; after `MAX_RESAMPLES` the nearest free candidate is enqueued instead. The budget counts the
  sweep's trial rows (the database is the truth after a driver restart) and the device-seconds spent. After a
  restart, a row sampled after the last experiment snapshot (queued, unknown to the restored searcher and to Tune)
  is adopted: enqueued in Optuna and run next, so no sampled configuration is left unrun.
- `RungStopper` is `ray.tune.schedulers.ASHAScheduler` on the per-epoch validation robust accuracy (time in
  epochs); a trial's last epoch is never cut (its final evaluation runs); `stop_reason` says at which rung, with
  which accuracy and cutoff, a trial was stopped; the DBWriter stores it with the trial's `stopped` status.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from db.engine import make_engine, session_factory
from db.sweeps import add_trials, get_trial_by_hash, list_trials
from search_spaces.search import ASHA_METRIC, CandidateSpace, SearchConfig

log = logging.getLogger(__name__)

MAX_RESAMPLES = 20  # sampler proposals of taken points before the nearest free candidate is enqueued


@dataclass(frozen=True)
class Candidate:
    """One configuration a search may run: its trial-row columns (as create_sweep takes them), the metrics known
    before training, its planned device-seconds and its Ray resources."""

    row: dict[str, Any]  # config, config_hash, arch, params, flops, ... (no idx)
    known: dict[str, Any]  # {"params": ..., "flops": ...}
    est_seconds: float
    resources: dict[str, float]


def make_optuna(search: SearchConfig, space: CandidateSpace, n_candidates: int) -> OptunaSearch:
    import optuna

    dists = {a: optuna.distributions.IntDistribution(0, len(v) - 1) for a, v in space.axes.items()}
    metrics = [o.metric for o in search.objectives]
    modes = [o.mode for o in search.objectives]
    if search.algorithm == "tpe":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
            seed=search.seed, n_startup_trials=search.startup_trials(n_candidates), multivariate=True)
        return OptunaSearch(space=dists, metric=metrics[0], mode=modes[0], sampler=sampler)
    sampler = optuna.samplers.NSGAIISampler(population_size=search.population(n_candidates), seed=search.seed)
    return OptunaSearch(space=dists, metric=metrics, mode=modes, sampler=sampler)


class CandidateSearcher(Searcher):
    """Samples distinct stored configurations with an Optuna sampler, within a trial and a device-time budget."""

    def __init__(self, search: SearchConfig, candidates: list[Candidate], *, database_url: str, sweep_id: int,
                 data_root: str | None):
        self.space = CandidateSpace([c.row["config"] for c in candidates])
        self.inner = make_optuna(search, self.space, len(candidates)) if self.space.axes else None
        metric = [o.metric for o in search.objectives]
        mode = [o.mode for o in search.objectives]
        super().__init__(metric=metric[0] if len(metric) == 1 else metric, mode=mode[0] if len(mode) == 1 else mode)
        self.objectives = metric
        self.candidates = candidates
        self.database_url, self.sweep_id, self.data_root = database_url, sweep_id, data_root
        self.budget_trials = search.trial_budget(len(candidates))
        self.budget_seconds = None if search.budget_gpu_hours is None else search.budget_gpu_hours * 3600
        self.live: dict[str, tuple[str, int]] = {}  # Tune trial id -> (Optuna-side id, candidate index)
        self.results: dict[int, dict[str, float]] = {}  # candidate -> objective values
        self.taken: set[int] = set()
        self.spent_seconds = 0.0  # device-seconds of finished trials
        self._hash_index = {c.row["config_hash"]: i for i, c in enumerate(candidates)}
        self._sessions: Any = None

    # -- persistence: no engine in the pickle (Tune saves searchers with the experiment) ---------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sessions": None}

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    def _make_session(self) -> Any:
        if self._sessions is None:
            self._sessions = session_factory(make_engine(self.database_url))
        return self._sessions

    # -- Tune's searcher interface --------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        with self._make_session()() as s:  # rows inserted before a driver restart count as taken
            stored = {self._hash_index[t.config_hash]: t.status for t in list_trials(s, sweep_id=self.sweep_id)
                      if t.config_hash in self._hash_index}
        orphans = sorted(i for i, status in stored.items() if status == "queued" and i not in self.taken)
        taken = self.taken | set(stored)
        if orphans:
            rid, i = self._enqueue(trial_id, orphans[0])
        elif len(taken) >= self.budget_trials:
            return Searcher.FINISHED
        else:
            running = sum(self.candidates[i].est_seconds for _, i in self.live.values())
            if self.budget_seconds is not None and self.spent_seconds + running >= self.budget_seconds:
                return Searcher.FINISHED if not self.live else None  # wait: running trials may free budget
            rid, i = self._sample(trial_id, taken)
        self.taken.add(i)
        self.live[trial_id] = (rid, i)
        return {"trial": self._space_of(i)}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        rid, i = self.live.pop(trial_id, ("", -1))
        if i < 0:
            return
        self.spent_seconds += float((result or {}).get("gpu_seconds") or 0.0)
        values = {m: (result or {}).get(m) for m in self.objectives}
        if self.inner is None:
            return
        if result and result.get("kind") == "final" and not error and all(v is not None for v in values.values()):
            self.results[i] = {m: float(v) for m, v in values.items()}
            self.inner.on_trial_complete(rid, result=self.results[i])
        elif result and result.get("kind") == "epoch" and not error:
            self.inner.on_trial_complete(rid, result=None)  # stopped early by the scheduler: pruned
        else:
            self.inner.on_trial_complete(rid, error=True)

    # -- internals --------------------------------------------------------------------------------------------------
    def _sample(self, trial_id: str, taken: set[int]) -> tuple[str, int]:
        """(Optuna-side id, candidate index) of a candidate not yet taken."""
        if self.inner is None:  # one candidate: nothing to sample
            return "", min(set(range(len(self.candidates))) - taken)
        params: dict[str, int] = {}
        for attempt in range(MAX_RESAMPLES):
            rid = f"{trial_id}:{attempt}"
            params = self.inner.suggest(rid)
            i = self.space.index_of(params)
            if i is not None and i not in taken:
                return rid, i
            if i is not None and i in self.results:  # a repeat of a finished point: tell its known result again
                self.inner.on_trial_complete(rid, result=self.results[i])
            else:  # a combination the spec excludes, or a point still running
                self.inner.on_trial_complete(rid, error=True)
        i = self.space.nearest(params, taken)
        assert i is not None, "budget check guarantees a free candidate"
        log.info("sampler keeps proposing taken points; enqueueing the nearest free candidate %d", i)
        return self._enqueue(trial_id, i)

    def _enqueue(self, trial_id: str, i: int) -> tuple[str, int]:
        """Make candidate i the sampler's next trial (Optuna's enqueue), so its result is told like any other."""
        if self.inner is None:
            return "", i
        self.inner._ot_study.enqueue_trial(self.space.params_of(i))  # OptunaSearch exposes no public enqueue
        rid = f"{trial_id}:enqueued"
        got = self.space.index_of(self.inner.suggest(rid))
        return rid, got if got is not None else i

    def _space_of(self, i: int) -> dict[str, Any]:
        """Insert (or find, after a restart) the candidate's trial row; the trial's param space."""
        c = self.candidates[i]
        with self._make_session().begin() as s:
            add_trials(s, sweep_id=self.sweep_id, trials=[c.row])
            trial = get_trial_by_hash(s, sweep_id=self.sweep_id, config_hash=c.row["config_hash"])
            assert trial is not None
            trial_id = trial.id
        return {"trial_id": trial_id, "config": c.row["config"], "data_root": self.data_root, "known": c.known,
                "resources": c.resources}


def make_search_alg(search: SearchConfig, candidates: list[Candidate], *, database_url: str, sweep_id: int,
                    data_root: str | None) -> ConcurrencyLimiter:
    searcher = CandidateSearcher(search, candidates, database_url=database_url, sweep_id=sweep_id,
                                 data_root=data_root)
    return ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent)


class RungStopper(ASHAScheduler):
    """ASHA on the validation robust accuracy of each epoch (`time_attr = "epoch"`, maximised)."""

    def __init__(self, *, epochs: int, grace_period: int, reduction_factor: float):
        super().__init__(time_attr="epoch", metric=ASHA_METRIC, mode="max", max_t=epochs, grace_period=grace_period,
                         reduction_factor=reduction_factor, brackets=1, stop_last_trials=True)
        self.epochs = epochs
        self.reasons: dict[str, str] = {}

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        epoch, acc = result.get("epoch"), result.get(ASHA_METRIC)
        if result.get("kind") != "epoch" or acc is None or epoch is None or epoch >= self.epochs:
            return TrialScheduler.CONTINUE  # final/failed reports; and the last epoch: let the final evaluation run
        rung = self._rung(trial.trial_id, epoch)
        before = None if rung is None else self._trial_info[trial.trial_id].cutoff(rung[1])
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and rung is not None:
            self.reasons[trial.trial_id] = (
                f"asha: stopped at epoch {epoch} (the rung at epoch {rung[0]:g}; rungs at epochs "
                f"{self._rungs_str(trial.trial_id)}): validation robust_acc {acc:.4f} below the rung cutoff "
                f"{float(before):.4f}, the top 1/{self._reduction_factor:g} of the {len(rung[1])} "
                f"trial{'' if len(rung[1]) == 1 else 's'} recorded there")
        return action

    def _rung(self, trial_id: str, epoch: int) -> tuple[float, dict[str, float]] | None:
        """The rung this epoch's result is recorded at (mirrors ASHA's _Bracket.on_result), or None."""
        for milestone, recorded in self._trial_info[trial_id]._rungs:  # descending milestones
            if epoch >= milestone and trial_id not in recorded:
                return milestone, dict(recorded)
            if epoch >= milestone:
                return None
        return None

    def _rungs_str(self, trial_id: str) -> str:
        return ",".join(f"{m:g}" for m, _ in reversed(self._trial_info[trial_id]._rungs))

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self._trial_info.pop(trial.trial_id, None)  # the final report is no rung result

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._trial_info.pop(trial.trial_id, None)

    def stop_reason(self, trial_id: str) -> str | None:
        return self.reasons.get(trial_id)


def make_scheduler(search: SearchConfig | None, epochs: int) -> RungStopper | None:
    if search is None or search.scheduler != "asha":
        return None
    return RungStopper(epochs=epochs, grace_period=search.asha.grace_period,
                       reduction_factor=search.asha.reduction_factor)
