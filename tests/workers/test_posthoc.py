"""Post-hoc evaluation of stored checkpoints (workers.posthoc) and the trials it picks (db.front), without Ray: a
tiny synthetic trial trained by workers.final_eval.train_and_evaluate, its state saved as the trainable saves it
(`<storage>/<experiment>/trial-<id>/checkpoint_*/state.pt`), re-attacked in-process. One Ray-marked test runs the
job path (one @ray.remote task per (trial, checkpoint)) once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from db.contract import FinalRow
from db.engine import make_engine, session_factory, upgrade
from db.front import front_trials, widened_front_mask
from db.results import query_results, upsert_final
from db.sweeps import create_sweep
from search_spaces.config import TrialConfig
from workers.final_eval import train_and_evaluate
from workers.posthoc import evaluate_checkpoint, plan_work, posthoc_attack, progress_path, run_local, run_ray
from workers.trainable import STATE_FILE
from workers.trainer import TrainState

CPU = torch.device("cpu")
TINY: dict[str, Any] = {
    "depths": (1, 1, 1), "widths": (1, 1, 1), "dataset": "synthetic", "n_train": 320, "val_size": 128, "n_test": 128,
    "epochs": 3, "best_from": 0.0, "batch_size": 64, "lr": 0.05, "train_attack": {"steps": 2, "step_size": 0.01},
    "eval_attack": {"steps": 3, "step_rel": 0.5}, "eps": 8 / 255,
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained() -> tuple[TrialConfig, TrainState, list[FinalRow]]:
    torch.set_num_threads(1)
    cfg = TrialConfig(**TINY)
    state, rows = train_and_evaluate(cfg, device=CPU, data_root=None)
    return cfg, state, rows


def _save(state: TrainState, storage: Path, trial_id: int, experiment: str = "sweep-1-s") -> Path:
    """The state file where the trainable's last checkpoint of trial `trial_id` lies."""
    ckpt = storage / experiment / f"trial-{trial_id}" / f"checkpoint_{state.epoch - 1:06d}"
    ckpt.mkdir(parents=True)
    torch.save(state.to_dict(), ckpt / STATE_FILE)
    return ckpt / STATE_FILE


def _counts(row: FinalRow) -> tuple[Any, ...]:
    return row.n_total, row.n_correct, row.n_robust, row.n_stable, row.epoch


# ------------------------------------------------------------------------------------------- the front


def test_widened_front_keeps_trials_within_two_standard_errors() -> None:
    params, n = [1, 2, 3, 4], [100] * 4
    # front: (1, .30) and (2, .50); (3, .49) trails (2, .50) by 1 point, within 2 SE (2 * 0.0707); (4, .20) by 30
    assert widened_front_mask(params, [0.30, 0.50, 0.49, 0.20], n).tolist() == [True, True, True, False]
    # with 10,000 test images the band is 2 * 0.0070: 3 points behind is out, 1 point behind still in
    assert widened_front_mask(params, [0.30, 0.50, 0.47, 0.49], [10_000] * 4).tolist() == [True, True, False, True]
    assert widened_front_mask([], [], []).tolist() == []
    with pytest.raises(ValueError, match="n_total"):
        widened_front_mask([1], [0.5], [0])


def test_front_trials_reads_the_best_pgd20_rows_per_eps(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    upgrade(make_engine(url))
    make = session_factory(make_engine(url))
    spec = [(1000, 8, 0.30), (2000, 8, 0.50), (3000, 8, 0.49), (4000, 8, 0.20), (5000, 2, 0.10)]
    with make.begin() as s:
        sweep = create_sweep(s, name="s", spec={}, code_version="t", trials=[_trial_row(i, p, e)
                                                                             for i, (p, e, _) in enumerate(spec)])
        ids = [t.id for t in sweep.trials]
        for t, (_, _, r) in zip(sweep.trials, spec, strict=True):
            upsert_final(s, trial_id=t.id, row=FinalRow(checkpoint="best", attack="pgd20", robust_acc=r, n_total=100,
                                                        n_robust=round(100 * r)))
        sweep_id = sweep.id
    with make() as s:
        chosen, n = front_trials(s, sweep_id=sweep_id)
        assert (chosen, n) == ([ids[0], ids[1], ids[2], ids[4]], 5)  # eps 2/255 is its own front
        assert front_trials(s, sweep_id=sweep_id, eps=[8 / 255]) == ([ids[0], ids[1], ids[2]], 4)


def _trial_row(i: int, params: int, eps_255: int, config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"config": config or {"eps": eps_255 / 255}, "config_hash": f"h{i}", "arch": f"wrn-d{i}-1-1-w1-1-1",
            "depths": f"{i}-1-1", "widths": "1-1-1", "params": params, "macs": 10 * params, "method": "sat",
            "lam": 1.0, "eps": eps_255 / 255, "norm": "linf", "dataset": "synthetic", "n_train": None, "seed": 0}


# -------------------------------------------------------------------------------------- the evaluation


def test_posthoc_attacks_follow_the_keys(trained) -> None:
    cfg, _, _ = trained
    pgd = posthoc_attack(cfg, "pgd100")
    assert (pgd.steps, pgd.step_size, pgd.eps) == (100, pytest.approx(cfg.eps / 2), cfg.eps)  # the trial's step rule
    assert (posthoc_attack(cfg, "cw20").steps, posthoc_attack(cfg, "cw20").kappa) == (20, 50.0)
    assert posthoc_attack(cfg, "apgd-ce").attacks == ("apgd-ce",)
    assert posthoc_attack(cfg, "autoattack").attacks is None  # the standard version
    assert posthoc_attack(cfg.model_copy(update={"eps": 0.0}), "autoattack") is None
    assert posthoc_attack(cfg, "square").attacks == ("square",)
    with pytest.raises(ValueError, match="gama100"):  # a reference's attack key, not one we run
        posthoc_attack(cfg, "gama100")


def test_posthoc_pgd_reproduces_the_final_evaluation(trained, tmp_path: Path) -> None:
    """Same weights, same attack, same seed (one batch: seed cfg.seed): the best and last rows of the end of
    training, to the image."""
    cfg, state, rows = trained
    state_file = _save(state, tmp_path, 7)
    for row in rows:
        again = evaluate_checkpoint(cfg, state_file=state_file, checkpoint=row.checkpoint, attack=row.attack,
                                    device=CPU, data_root=None)
        assert _counts(again) == _counts(row)
        # the losses to float rounding: the trained model may run in another memory layout than a fresh one
        assert again.adv_loss_test == pytest.approx(row.adv_loss_test, rel=1e-2)
        assert again.clean_loss_test == pytest.approx(row.clean_loss_test, rel=1e-2)
    assert 0 < rows[0].n_robust < rows[0].n_correct  # a regime where the comparison says something


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("attack", ["pgd10", "apgd-ce"])  # apgd-ce: AutoAttack's first component (the standard
# version adds Square's 5000 queries: minutes on this CPU)
def test_an_interrupted_evaluation_resumes_where_it_stopped(trained, tmp_path: Path, attack: str) -> None:
    cfg, state, _ = trained
    whole = evaluate_checkpoint(cfg, state_file=_save(state, tmp_path / "a", 1), checkpoint="best", attack=attack,
                                device=CPU, data_root=None, batch_size=32)  # 4 batches of 32
    state_file = _save(state, tmp_path / "b", 1)

    def stop_after_two(b: int, _: Any) -> None:
        if b == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        evaluate_checkpoint(cfg, state_file=state_file, checkpoint="best", attack=attack, device=CPU,
                            data_root=None, batch_size=32, after_batch=stop_after_two)
    saved = json.loads(progress_path(state_file, "best", attack).read_text())
    assert (saved["next_batch"], saved["n_total"], saved["done"]) == (2, 64, False)
    seen: list[int] = []
    resumed = evaluate_checkpoint(cfg, state_file=state_file, checkpoint="best", attack=attack, device=CPU,
                                  data_root=None, batch_size=32, after_batch=lambda b, _: seen.append(b))
    assert seen == [2, 3]  # the two finished batches were not attacked again
    assert _counts(resumed) == _counts(whole) and resumed.n_total == 128
    assert resumed.n_robust <= min(resumed.n_correct, resumed.n_stable)
    assert resumed.n_robust >= resumed.n_correct + resumed.n_stable - resumed.n_total
    # finished: a further run returns the stored counts without attacking
    assert _counts(evaluate_checkpoint(cfg, state_file=state_file, checkpoint="best", attack=attack, device=CPU,
                                       data_root=None, batch_size=32, after_batch=lambda b, _: seen.append(b))) \
        == _counts(whole) and seen == [2, 3]
    if attack != "pgd10":
        return
    # a progress file of another evaluation (other batch size) is not reused
    other = evaluate_checkpoint(cfg, state_file=state_file, checkpoint="best", attack=attack, device=CPU,
                                data_root=None, batch_size=64, after_batch=lambda b, _: seen.append(b))
    assert seen == [2, 3, 0, 1] and other.n_total == 128


def _store_with_trials(tmp_path: Path, cfg: TrialConfig, n: int) -> tuple[str, list[int]]:
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    upgrade(make_engine(url))
    with session_factory(make_engine(url)).begin() as s:
        sweep = create_sweep(s, name="s", spec={}, code_version="t",
                             trials=[_trial_row(i, 1000 * (i + 1), 8, cfg.model_dump(mode="json")) for i in range(n)])
        return url, [t.id for t in sweep.trials]


def test_run_local_appends_rows_and_skips_those_it_has(trained, tmp_path: Path) -> None:
    cfg, state, _ = trained
    url, (t1, t2) = _store_with_trials(tmp_path, cfg, 2)
    storage = tmp_path / "ray_results"
    _save(state, storage, t1)  # t2 never reached a checkpoint
    make = session_factory(make_engine(url))
    with make() as s:
        work, notes = plan_work(s, trial_ids=[t1, t2], attack="pgd100", checkpoints=("best", "last"),
                                storage_path=str(storage))
    assert [(w.trial_id, w.checkpoint, w.attack) for w in work] == [(t1, "best", "pgd100"), (t1, "last", "pgd100")]
    assert len(notes) == 1 and f"trial {t2}: no checkpoint" in notes[0]
    assert work[0].name == f"posthoc trial-{t1} {work[0].arch} best pgd100"  # named by trial and its stored arch
    run_local(make, work, data_root=None, device=CPU)
    with make() as s:
        rows = query_results(s, filters={"attack": "pgd100"})
        assert sorted((r["trial"], r["checkpoint"]) for r in rows) == [(t1, "best"), (t1, "last")]
        assert all(r["n_total"] == 128 and r["robust_acc"] == r["n_robust"] / 128 for r in rows)
        again, notes = plan_work(s, trial_ids=[t1], attack="pgd100", checkpoints=("best",),
                                 storage_path=str(storage))
        assert again == [] and notes == [f"trial {t1} best: has its pgd100 row"]
        forced, _ = plan_work(s, trial_ids=[t1], attack="pgd100", checkpoints=("best",),
                              storage_path=str(storage), force=True)
        assert len(forced) == 1


@pytest.mark.ray
def test_the_ray_job_path_writes_one_row_per_task(trained, tmp_path: Path, local_ray) -> None:
    cfg, state, rows = trained
    url, (t1, t2) = _store_with_trials(tmp_path, cfg, 2)
    storage = tmp_path / "ray_results"
    _save(state, storage, t1)
    _save(state, storage, t2)
    make = session_factory(make_engine(url))
    with make() as s:
        work, _ = plan_work(s, trial_ids=[t1, t2], attack="pgd3", checkpoints=("best",), storage_path=str(storage))
    assert run_ray(make, work, data_root=None) == 0
    with make() as s:
        stored = query_results(s, filters={"attack": "pgd3"})
    best = next(r for r in rows if r.checkpoint == "best" and r.attack == "pgd3")
    assert sorted(r["trial"] for r in stored) == [t1, t2]
    assert all((r["n_robust"], r["n_correct"]) == (best.n_robust, best.n_correct) for r in stored)
    assert np.isfinite([r["device_seconds"] for r in stored]).all()
