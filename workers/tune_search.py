"""Ray Tune pieces of a search sweep (search_spaces.search): an Optuna sampler over the expanded grid that never
runs a configuration twice and stays within a budget, and ASHA that stops trials at rungs and says why. Public Ray
and Optuna APIs only: a Tune `Searcher` that drives an `optuna.Study` by ask/tell, and a Tune `FIFOScheduler` that
keeps its own rung records.

- `CandidateSearcher` asks an in-memory `optuna.Study` (TPESampler for one objective, NSGAIISampler for several)
  for one integer axis per varying hyperparameter. A sampled point is mapped to its stored configuration; before
  the trial runs, its row is inserted into the database (so every trial row exists before it runs) and the trial
  gets that row's id. A point already taken is told back to Optuna (its known result, or a failure while it still
  runs) and the sampler asked again; after `MAX_RESAMPLES` the nearest free candidate is enqueued instead
  (`study.enqueue_trial`). A finished trial is told as complete (its objective values), pruned (stopped at a rung)
  or failed. The budget counts the sweep's trial rows (the database is the truth after a driver restart) and the
  device-seconds spent. After a restart, a row sampled after the last experiment snapshot (queued, unknown to the
  restored searcher and to Tune) is adopted: enqueued in Optuna and run next, so no sampled configuration is left
  unrun. The study lives in memory and is pickled with the searcher (Tune saves searchers with the experiment):
  `dump_study` / `load_study` carry its locks across as fresh ones (optuna 5's GA samplers hold a
  `threading.Lock`), so the restored study has the same trials and the same sampler state.
- `RungStopper` is asynchronous successive halving (one bracket, as Ray's `ASHAScheduler(brackets=1)` decides) on
  the per-epoch validation robust accuracy (time in epochs), with its rung records in `Rungs`; a trial's last
  epoch is never cut (its final evaluation runs); `stop_reason` says at which rung, with which accuracy and
  cutoff, a trial was stopped; the DBWriter stores it with the trial's `stopped` status.
"""

from __future__ import annotations

import copyreg
import io
import logging
import pickle
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from db.engine import make_engine, session_factory
from db.sweeps import add_trials, get_trial_by_hash, list_trials
from search_spaces.search import ASHA_METRIC, CandidateSpace, SearchConfig

log = logging.getLogger(__name__)

MAX_RESAMPLES = 20  # sampler proposals of taken points before the nearest free candidate is enqueued
TRIAL_SECONDS = "trial_device_seconds"  # the trainable's report key: device-seconds of the whole trial so far (s)


@dataclass(frozen=True)
class Candidate:
    """One configuration a search may run: its trial-row columns (as create_sweep takes them), the metrics known
    before training, its planned device-seconds and its Ray resources."""

    row: dict[str, Any]  # config, config_hash, arch, params, macs, ... (no idx)
    known: dict[str, Any]  # {"params": ..., "macs": ...}
    est_seconds: float  # planned device-seconds of the whole trial
    resources: dict[str, float]


_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def _fresh_lock(lock: Any) -> tuple[Any, tuple[()]]:
    """A lock pickles as a new, unlocked lock of its kind (no thread holds it in the restored process)."""
    return (threading.RLock if isinstance(lock, _LOCK_TYPES[1]) else threading.Lock), ()


def dump_study(study: optuna.Study | None) -> bytes | None:
    """The in-memory study (storage, trials, sampler with its RNG state) as bytes; its locks become fresh ones."""
    if study is None:
        return None
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = copyreg.dispatch_table.copy()
    pickler.dispatch_table.update({t: _fresh_lock for t in _LOCK_TYPES})
    pickler.dump(study)
    return buf.getvalue()


def load_study(data: bytes | None) -> optuna.Study | None:
    return None if data is None else pickle.loads(data)


def make_study(search: SearchConfig, n_candidates: int) -> optuna.Study:
    """An in-memory study: TPE (multivariate) for one objective, NSGA-II for two or more."""
    directions = ["minimize" if o.mode == "min" else "maximize" for o in search.objectives]
    sampler: optuna.samplers.BaseSampler
    if search.algorithm == "tpe":
        sampler = optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=search.startup_trials(n_candidates),
                                             multivariate=True)
    else:
        sampler = optuna.samplers.NSGAIISampler(population_size=search.population(n_candidates), seed=search.seed)
    return optuna.create_study(sampler=sampler, directions=directions)


class CandidateSearcher(Searcher):
    """Samples distinct stored configurations with an Optuna sampler, within a trial and a device-time budget."""

    def __init__(self, search: SearchConfig, candidates: list[Candidate], *, database_url: str, sweep_id: int,
                 data_root: str | None):
        self.space = CandidateSpace([c.row["config"] for c in candidates])
        self.dists = {a: optuna.distributions.IntDistribution(0, len(v) - 1) for a, v in self.space.axes.items()}
        self.study = make_study(search, len(candidates)) if self.dists else None  # None: one candidate
        metric = [o.metric for o in search.objectives]
        mode = [o.mode for o in search.objectives]
        super().__init__(metric=metric[0] if len(metric) == 1 else metric, mode=mode[0] if len(mode) == 1 else mode)
        self.objectives = metric
        self.candidates = candidates
        self.database_url, self.sweep_id, self.data_root = database_url, sweep_id, data_root
        self.budget_trials = search.trial_budget(len(candidates))
        self.budget_seconds = None if search.budget_gpu_hours is None else search.budget_gpu_hours * 3600
        self.live: dict[str, tuple[int | None, int]] = {}  # Tune trial id -> (Optuna trial number, candidate index)
        self.results: dict[int, dict[str, float]] = {}  # candidate -> objective values
        self.taken: set[int] = set()
        self.spent_seconds = 0.0  # device-seconds of finished trials
        self._hash_index = {c.row["config_hash"]: i for i, c in enumerate(candidates)}
        self._sessions: Any = None

    # -- persistence: no engine in the pickle (Tune saves searchers with the experiment); the study as bytes -------
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sessions": None, "study": dump_study(self.study)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**state, "study": load_study(state["study"])})

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__setstate__(pickle.load(f))

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
            number, i = self._enqueue(orphans[0])
        elif len(taken) >= self.budget_trials:
            return Searcher.FINISHED
        else:
            running = sum(self.candidates[i].est_seconds for _, i in self.live.values())
            if self.budget_seconds is not None and self.spent_seconds + running >= self.budget_seconds:
                return Searcher.FINISHED if not self.live else None  # wait: running trials may free budget
            number, i = self._sample(taken)
        self.taken.add(i)
        self.live[trial_id] = (number, i)
        return {"trial": self._space_of(i)}

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        number, i = self.live.pop(trial_id, (None, -1))
        if i < 0:
            return
        self.spent_seconds += float((result or {}).get(TRIAL_SECONDS) or 0.0)
        if self.study is None or number is None:
            return
        values = {m: (result or {}).get(m) for m in self.objectives}
        if result and result.get("kind") == "final" and not error and all(v is not None for v in values.values()):
            self.results[i] = {m: float(v) for m, v in values.items()}
            self.study.tell(number, self._values(i))
        elif result and result.get("kind") == "epoch" and not error:
            self.study.tell(number, state=TrialState.PRUNED)  # stopped early by the scheduler
        else:
            self.study.tell(number, state=TrialState.FAIL)

    # -- internals --------------------------------------------------------------------------------------------------
    def _values(self, i: int) -> list[float]:
        """Candidate i's known objective values, in the study's objective order."""
        return [self.results[i][m] for m in self.objectives]

    def _sample(self, taken: set[int]) -> tuple[int | None, int]:
        """(Optuna trial number, candidate index) of a candidate not yet taken."""
        if self.study is None:  # one candidate: nothing to sample
            return None, min(set(range(len(self.candidates))) - taken)
        params: dict[str, int] = {}
        for _ in range(MAX_RESAMPLES):
            trial = self.study.ask(self.dists)
            params = trial.params
            i = self.space.index_of(params)
            if i is not None and i not in taken:
                return trial.number, i
            if i is not None and i in self.results:  # a repeat of a finished point: tell its known result again
                self.study.tell(trial.number, self._values(i))
            else:  # a combination the spec excludes, or a point still running
                self.study.tell(trial.number, state=TrialState.FAIL)
        i = self.space.nearest(params, taken)
        assert i is not None, "budget check guarantees a free candidate"
        log.info("sampler keeps proposing taken points; enqueueing the nearest free candidate %d", i)
        return self._enqueue(i)

    def _enqueue(self, i: int) -> tuple[int | None, int]:
        """Make candidate i the study's next trial (enqueue, then ask), so its result is told like any other."""
        if self.study is None:
            return None, i
        self.study.enqueue_trial(self.space.params_of(i))
        trial = self.study.ask(self.dists)
        got = self.space.index_of(trial.params)
        return trial.number, got if got is not None else i

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


@dataclass(frozen=True)
class RungDecision:
    """What one result did at a rung: recorded there, compared with the rung's cutoff before it was added."""

    milestone: float  # the rung's epoch
    cutoff: float | None  # the top 1/rf quantile of the values recorded there before (None: none were)
    n_recorded: int  # trials recorded at the rung before this one
    stop: bool


class Rungs:
    """The rung records of one ASHA bracket, as Ray's `ASHAScheduler(brackets=1)` keeps them: rungs at
    grace_period * reduction_factor**k epochs for k < int(log(max_t / grace_period) / log(reduction_factor) + 1);
    a result at time t is recorded at the highest rung <= t where its trial has no record yet, and stops the trial
    when it is below that rung's cutoff (the (1 - 1/rf) percentile of the values recorded there, NaNs ignored,
    linear interpolation). Values are maximised. Plain data: pickles with the scheduler."""

    def __init__(self, *, grace_period: int, reduction_factor: float, max_t: int):
        n = int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)
        self.reduction_factor = reduction_factor
        self.milestones = [grace_period * reduction_factor**k for k in range(n)]  # ascending, in epochs
        self.recorded: list[dict[str, float]] = [{} for _ in self.milestones]  # per rung: trial id -> value

    def cutoff(self, rung: int) -> float | None:
        values = list(self.recorded[rung].values())
        if not values:
            return None
        return float(np.nanpercentile(values, (1 - 1 / self.reduction_factor) * 100))

    def on_result(self, trial_id: str, t: float, value: float) -> RungDecision | None:
        """Record a result at time t; None when it reaches no rung it is not yet recorded at."""
        for rung in reversed(range(len(self.milestones))):
            if t < self.milestones[rung] or trial_id in self.recorded[rung]:
                continue
            cutoff, n = self.cutoff(rung), len(self.recorded[rung])
            self.recorded[rung][trial_id] = value
            return RungDecision(self.milestones[rung], cutoff, n, cutoff is not None and value < cutoff)
        return None


class RungStopper(FIFOScheduler):
    """ASHA on the validation robust accuracy of each epoch (time in epochs, maximised); FIFO otherwise."""

    def __init__(self, *, epochs: int, grace_period: int, reduction_factor: float):
        super().__init__()
        self._metric = ASHA_METRIC
        self.epochs = epochs
        self.rungs = Rungs(grace_period=grace_period, reduction_factor=reduction_factor, max_t=epochs)
        self.reasons: dict[str, str] = {}

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        epoch, acc = result.get("epoch"), result.get(ASHA_METRIC)
        if result.get("kind") != "epoch" or acc is None or epoch is None or epoch >= self.epochs:
            return TrialScheduler.CONTINUE  # final/failed reports; and the last epoch: let the final evaluation run
        decision = self.rungs.on_result(trial.trial_id, epoch, float(acc))
        if decision is None or not decision.stop:
            return TrialScheduler.CONTINUE
        rungs, n = ",".join(f"{m:g}" for m in self.rungs.milestones), decision.n_recorded
        self.reasons[trial.trial_id] = (
            f"asha: stopped at epoch {epoch} (the rung at epoch {decision.milestone:g}; rungs at epochs {rungs}): "
            f"validation robust_acc {acc:.4f} below the rung cutoff {decision.cutoff:.4f}, the top "
            f"1/{self.rungs.reduction_factor:g} of the {n} trial{'' if n == 1 else 's'} recorded there")
        return TrialScheduler.STOP

    def stop_reason(self, trial_id: str) -> str | None:
        return self.reasons.get(trial_id)

    def debug_string(self) -> str:
        rungs = " | ".join(f"epoch {m:g}: {self.rungs.cutoff(k)}" for k, m in enumerate(self.rungs.milestones))
        return f"Using ASHA (own rung records): {len(self.reasons)} stopped; cutoffs {rungs}"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def make_scheduler(search: SearchConfig | None, epochs: int) -> RungStopper | None:
    if search is None or search.scheduler != "asha":
        return None
    return RungStopper(epochs=epochs, grace_period=search.asha.grace_period,
                       reduction_factor=search.asha.reduction_factor)
