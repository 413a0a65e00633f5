"""workers.tune_search without a Ray runtime: the rung records against Ray's own ASHAScheduler (same decisions on
the same results, cutoffs by hand), the scheduler and the searcher surviving a pickle mid-run, and what the
searcher tells its Optuna study (complete with values, pruned, failed; repeats told back, never run twice)."""

from __future__ import annotations

import os
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.samplers import NSGAIISampler, TPESampler
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher

from db.engine import make_engine, session_factory, upgrade
from db.sweeps import create_sweep, list_trials
from search_spaces.spec import SweepSpec
from workers import tune_search
from workers.tune_search import CandidateSearcher, Rungs, RungStopper

# ------------------------------------------------------------------------------------------------ rung records


def _epoch(e: int, acc: float) -> dict[str, Any]:
    return {"kind": "epoch", "epoch": e, "robust_acc": acc}


def _interleaved(n_trials: int, epochs: int, rng: random.Random) -> list[tuple[str, int, float]]:
    """(trial, epoch, acc) results in a random interleaving, each trial's epochs in order (below the last epoch),
    a third of the trials skipping some epochs (a result may pass a rung); accuracies on a 0.05 grid so that ties
    and percentile interpolation both occur."""
    queues = {f"t{k}": [(e, rng.randrange(21) * 0.05) for e in range(1, epochs) if k % 3 or rng.random() < 0.5]
              for k in range(n_trials)}
    queues = {k: q for k, q in queues.items() if q}
    out = []
    while queues:
        tid = rng.choice(sorted(queues))
        e, acc = queues[tid].pop(0)
        out.append((tid, e, acc))
        if not queues[tid]:
            del queues[tid]
    return out


@pytest.mark.parametrize(("epochs", "grace", "rf"), [(3, 1, 2.0), (9, 1, 3.0), (10, 2, 2.0), (8, 1, 2.5), (17, 1, 4.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rung_stopper_decides_as_rays_asha(epochs: int, grace: int, rf: float, seed: int) -> None:
    """The same interleaved results into Ray's ASHAScheduler(brackets=1) and RungStopper: the same CONTINUE/STOP
    at every result (a stopped trial reports nothing more)."""
    rng = random.Random(seed)
    ours = RungStopper(epochs=epochs, grace_period=grace, reduction_factor=rf)
    ray_asha = ASHAScheduler(time_attr="epoch", metric="robust_acc", mode="max", max_t=epochs, grace_period=grace,
                             reduction_factor=rf, brackets=1)
    trials = {f"t{k}": SimpleNamespace(trial_id=f"t{k}") for k in range(12)}
    for t in trials.values():
        ray_asha.on_trial_add(None, t)
        ours.on_trial_add(None, t)
    stopped: set[str] = set()
    decisions = 0
    for tid, e, acc in _interleaved(12, epochs, rng):
        if tid in stopped:
            continue
        expected = ray_asha.on_trial_result(None, trials[tid], _epoch(e, acc))
        assert ours.on_trial_result(None, trials[tid], _epoch(e, acc)) == expected, (tid, e, acc)
        decisions += 1
        if expected == TrialScheduler.STOP:
            stopped.add(tid)
            assert ours.stop_reason(tid) is not None
    assert stopped and len(stopped) < 12 and decisions > 12  # the sequence exercised both outcomes
    assert set(ours.reasons) == stopped


def test_rung_milestones_match_ashas_formula() -> None:
    assert Rungs(grace_period=1, reduction_factor=2, max_t=3).milestones == [1, 2]
    assert Rungs(grace_period=1, reduction_factor=2, max_t=4).milestones == [1, 2, 4]
    assert Rungs(grace_period=1, reduction_factor=3, max_t=9).milestones == [1, 3, 9]
    assert Rungs(grace_period=2, reduction_factor=2, max_t=10).milestones == [2, 4, 8]
    assert Rungs(grace_period=1, reduction_factor=4, max_t=3).milestones == [1]


def test_rung_cutoffs_by_hand() -> None:
    """rf=3: the cutoff is the 66.7th percentile, linear between the sorted values recorded so far."""
    rungs = Rungs(grace_period=1, reduction_factor=3, max_t=9)  # rungs at epochs 1, 3, 9
    assert rungs.on_result("a", 1, 0.1) == tune_search.RungDecision(1, None, 0, False)
    d = rungs.on_result("b", 1, 0.9)  # cutoff of {0.1}: 0.1
    assert (d.cutoff, d.n_recorded, d.stop) == (pytest.approx(0.1), 1, False)
    d = rungs.on_result("c", 2, 0.5)  # {0.1, 0.9}: 0.1 + 2/3 * 0.8
    assert (d.milestone, d.cutoff, d.n_recorded, d.stop) == (1, pytest.approx(0.6333333), 2, True)
    d = rungs.on_result("d", 1, 0.7)  # {0.1, 0.5, 0.9}: positions 0..2, at 4/3: 0.5 + 1/3 * 0.4
    assert (d.cutoff, d.stop) == (pytest.approx(0.6333333), False)
    assert rungs.on_result("d", 2, 0.0) is None  # recorded at rung 1 already; rung 3 not reached
    d = rungs.on_result("e", 4, 0.95)  # first result past rung 3: recorded at the highest rung reached only
    assert (d.milestone, d.cutoff, d.stop) == (3, None, False)
    d = rungs.on_result("a", 5, 0.2)  # the highest rung reached (epoch 3): below the cutoff of {0.95}
    assert (d.milestone, d.cutoff, d.stop) == (3, pytest.approx(0.95), True)
    d = rungs.on_result("a", 6, 0.0)  # rung 3 recorded; falls back to rung 1 where a is recorded too
    assert d is None
    assert rungs.recorded == [{"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.7}, {"e": 0.95, "a": 0.2}, {}]
    assert rungs.on_result("e", 5, 0.0) is not None  # e has no record at rung 1 yet: recorded there now
    assert rungs.recorded[0]["e"] == 0.0


def test_stop_reason_names_the_rung_the_accuracy_and_the_cutoff() -> None:
    sched = RungStopper(epochs=9, grace_period=1, reduction_factor=3)
    a, b, c = (SimpleNamespace(trial_id=i) for i in "abc")
    assert sched.on_trial_result(None, a, _epoch(1, 0.1)) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, b, _epoch(1, 0.9)) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, c, _epoch(1, 0.5)) == TrialScheduler.STOP
    assert sched.stop_reason("c") == ("asha: stopped at epoch 1 (the rung at epoch 1; rungs at epochs 1,3,9): "
                                      "validation robust_acc 0.5000 below the rung cutoff 0.6333, the top 1/3 of "
                                      "the 2 trials recorded there")
    assert sched.on_trial_result(None, a, _epoch(3, 0.3)) == TrialScheduler.CONTINUE  # first at rung 3
    assert sched.on_trial_result(None, b, _epoch(3, 0.2)) == TrialScheduler.STOP  # below {0.3}'s cutoff 0.3
    assert "(the rung at epoch 3; " in (sched.stop_reason("b") or "")
    assert sched.on_trial_result(None, a, _epoch(9, 0.0)) == TrialScheduler.CONTINUE  # the last epoch: never cut
    assert sched.stop_reason("a") is None


def test_rung_stopper_pickles_mid_run() -> None:
    """Tuner.restore unpickles the scheduler: the copy holds the same records and decides the same."""
    sched = RungStopper(epochs=3, grace_period=1, reduction_factor=2)
    a, b = SimpleNamespace(trial_id="a"), SimpleNamespace(trial_id="b")
    sched.on_trial_result(None, a, _epoch(1, 0.5))
    copy = pickle.loads(pickle.dumps(sched))
    assert copy.rungs.recorded == [{"a": 0.5}, {}]
    assert copy.on_trial_result(None, b, _epoch(1, 0.4)) == TrialScheduler.STOP
    assert sched.on_trial_result(None, b, _epoch(1, 0.4)) == TrialScheduler.STOP
    assert copy.stop_reason("b") == sched.stop_reason("b")


# ------------------------------------------------------------------------------------------------------ searcher

TINY: dict[str, Any] = {
    "depths": [[1], [1], [1]],
    "widths": [[0.5], [0.5, 1], [0.5, 0.75, 1]],
    "dataset": "synthetic",
    "n_train": [256],
    "training": {"epochs": 2, "batch_size": 64, "val_size": 128, "n_test": 64, "lr": 0.05},
}
ROBUST = {"metric": "robust_acc", "mode": "max"}


def _searcher(tmp_path: Path, search: dict[str, Any]) -> tuple[Callable[[], CandidateSearcher], str, int]:
    """A factory of fresh searchers over one stored sweep (6 candidates), the database URL and the sweep id."""
    from workers.driver import _candidates

    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    engine = make_engine(url)
    upgrade(engine)
    spec = SweepSpec(**(TINY | {"search": search}))
    with session_factory(engine).begin() as s:
        sweep_id = create_sweep(s, name="s", spec=spec.model_dump(mode="json"), trials=[], code_version="test").id
    candidates = _candidates(spec, cluster_gpus=0, gpu_gib=16.0)
    assert len(candidates) == 6

    def make() -> CandidateSearcher:
        assert spec.search is not None
        return CandidateSearcher(spec.search, candidates, database_url=url, sweep_id=sweep_id, data_root=None)

    return make, url, sweep_id


def _final(trial: dict[str, Any], acc: float) -> dict[str, Any]:
    return {"kind": "final", "robust_acc": acc, "trial_device_seconds": 1.0, **trial["known"]}


def test_samplers_and_directions(tmp_path: Path) -> None:
    tpe = _searcher(tmp_path / "a", {"algorithm": "tpe", "objectives": [ROBUST]})[0]()
    assert tpe.study is not None and isinstance(tpe.study.sampler, TPESampler)
    assert [d.name for d in tpe.study.directions] == ["MAXIMIZE"]
    nsga = _searcher(tmp_path / "b", {"algorithm": "nsga2", "objectives": [{"metric": "params", "mode": "min"},
                                                                            ROBUST]})[0]()
    assert nsga.study is not None and isinstance(nsga.study.sampler, NSGAIISampler)
    assert [d.name for d in nsga.study.directions] == ["MINIMIZE", "MAXIMIZE"]


def test_the_study_is_told_complete_pruned_or_failed(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path, {"algorithm": "tpe", "objectives": [ROBUST], "budget_trials": 3})[0]()
    assert searcher.study is not None
    trials = [searcher.suggest(f"t{k}")["trial"] for k in range(3)]
    numbers = [searcher.live[f"t{k}"][0] for k in range(3)]
    searcher.on_trial_complete("t0", result=_final(trials[0], 0.4))
    searcher.on_trial_complete("t1", result={"kind": "epoch", "epoch": 1, "robust_acc": 0.1})  # stopped at a rung
    searcher.on_trial_complete("t2", result=None, error=True)
    states = {t.number: (t.state, t.values) for t in searcher.study.get_trials(deepcopy=False)}
    assert [states[n] for n in numbers] == [(TrialState.COMPLETE, [0.4]), (TrialState.PRUNED, None),
                                           (TrialState.FAIL, None)]
    assert searcher.spent_seconds == 1.0 and searcher.suggest("t3") == Searcher.FINISHED


def test_repeats_are_told_back_and_the_nearest_free_candidate_is_enqueued(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With one resample allowed, every candidate still runs exactly once; a proposal of a finished point is told
    its known values again, and an enqueued candidate is a study trial like any other."""
    monkeypatch.setattr(tune_search, "MAX_RESAMPLES", 1)
    make, url, sweep_id = _searcher(tmp_path, {"algorithm": "tpe", "objectives": [ROBUST], "n_startup_trials": 1})
    searcher = make()
    assert searcher.study is not None
    ran = []
    for k in range(10):
        cfg = searcher.suggest(f"t{k}")
        if cfg == Searcher.FINISHED:
            break
        ran.append(cfg["trial"]["trial_id"])
        searcher.on_trial_complete(f"t{k}", result=_final(cfg["trial"], 0.1 * (k + 1)))
    assert len(ran) == len(set(ran)) == 6
    with session_factory(make_engine(url))() as s:
        assert sorted(t.id for t in list_trials(s, sweep_id=sweep_id)) == sorted(ran)
    complete = [t for t in searcher.study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    assert len(complete) > 6  # the sampler proposed finished points: told, not run
    for t in complete:
        i = searcher.space.index_of(t.params)
        assert i is not None and t.values == [searcher.results[i]["robust_acc"]]
    assert sorted({searcher.space.index_of(t.params) for t in complete}) == list(range(6))


def test_the_searcher_pickles_with_its_study_mid_run(tmp_path: Path) -> None:
    """Tune saves the searcher with the experiment: the restored copy's study holds the same trials and proposes
    the same next candidate as the original (same sampler state)."""
    search = {"algorithm": "nsga2", "objectives": [{"metric": "params", "mode": "min"}, ROBUST],
              "population_size": 2, "seed": 5}
    make = _searcher(tmp_path, search)[0]
    searcher = make()
    for k in range(3):
        cfg = searcher.suggest(f"t{k}")
        searcher.on_trial_complete(f"t{k}", result=_final(cfg["trial"], 0.2 + 0.1 * k))
    searcher.suggest("t3")  # still running at the snapshot
    path = tmp_path / "searcher.pkl"
    searcher.save(str(path))
    restored = make()  # a fresh one, as Tune builds it before restoring
    restored.restore(str(path))
    assert restored._sessions is None and restored.study is not None and searcher.study is not None
    assert [(t.params, t.state, t.values) for t in restored.study.trials] == [
        (t.params, t.state, t.values) for t in searcher.study.trials]
    assert (restored.taken, restored.results, restored.live) == (searcher.taken, searcher.results, searcher.live)
    assert restored.study.ask(restored.dists).params == searcher.study.ask(searcher.dists).params  # sampler state
    number = restored.live["t3"][0]
    assert number is not None and restored.study.trials[number].state == TrialState.RUNNING
    restored.on_trial_complete("t3", result={"kind": "final", "robust_acc": 0.9, "trial_device_seconds": 2.0,
                                             "params": 1})
    assert (restored.study.trials[number].state, restored.study.trials[number].values) == (TrialState.COMPLETE,
                                                                                          [1.0, 0.9])
    again = pickle.loads(pickle.dumps(restored))
    assert again.spent_seconds == restored.spent_seconds == 5.0


@pytest.mark.skipif("ROBUSTGRID_EXPECT_OPTUNA" not in os.environ, reason="make test sets it for the lowest optuna run")
def test_the_optuna_under_test_is_the_one_asked_for() -> None:
    """`make test` runs this module again on the lowest optuna pyproject.toml allows: make sure it is that one."""
    assert optuna.__version__ == os.environ["ROBUSTGRID_EXPECT_OPTUNA"]
