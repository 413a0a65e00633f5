"""Science plumbing on a tiny synthetic setting: stored counts obey robust = correct AND stable, a non-finite loss
fails only its trial (reason `non_finite_loss` and the epoch), eps = 0 with SAT is the clean run, `init_from`
starts a trial from another run's weights, and the spec-time schedule rule mirrors the worker's."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from db.engine import make_engine, session_factory, upgrade
from db.sweeps import create_sweep, get_sweep, get_trial, set_sweep_status
from search_spaces.config import ScheduleConfig, TrialConfig, schedule_error
from workers.db_writer import DBWriter
from workers.final_eval import train_and_evaluate
from workers.init_from import load_init_weights, resolve_init_from
from workers.methods import MethodOutput
from workers.optim import validate_schedule
from workers.trainable import final_payload
from workers.trainer import NonFiniteLoss, Trainer, TrainState

CPU = torch.device("cpu")
TINY: dict[str, Any] = {
    "depths": (1, 1, 1), "widths": (1, 1, 1), "dataset": "synthetic", "n_train": 320, "val_size": 128, "n_test": 128,
    "epochs": 2, "batch_size": 64, "lr": 0.05, "train_attack": {"steps": 2, "step_size": 0.01},
    "eval_attack": {"steps": 3, "step_size": None},
}  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, int, list[int]]:
    """A SQLite store with one sweep of two queued trials: (url, sweep id, trial ids)."""
    url = f"sqlite:///{tmp_path / 'rg.db'}"
    upgrade(make_engine(url))
    trials = [{"config": {}, "config_hash": f"h{i}", "arch": "wrn-d1-1-1-w1-1-1", "depths": "1-1-1", "widths": "1-1-1",
               "params": 1, "macs": 1, "method": "sat", "lam": 1.0, "eps": 8 / 255, "norm": "linf",
               "dataset": "synthetic", "n_train": 320, "seed": i} for i in range(2)]  # fmt: skip
    with session_factory(make_engine(url)).begin() as s:
        sweep = create_sweep(s, name="s", spec={}, trials=trials, code_version="test")
        return url, sweep.id, [t.id for t in sweep.trials]


def _tune_trial(tid: int) -> Any:
    return SimpleNamespace(config={"trial": {"trial_id": tid}}, last_result={}, trial_id=f"t{tid}")


def test_stored_counts_obey_robust_equals_correct_and_stable(store: tuple[str, int, list[int]]) -> None:
    url, sweep_id, (tid, _) = store
    cfg = TrialConfig(**TINY, eps=8 / 255, final_attacks=("pgd", "fgsm"))
    state, rows = train_and_evaluate(cfg, device=CPU, data_root=None)
    writer = DBWriter(url, sweep_id)
    writer.on_trial_start(0, [], _tune_trial(tid))
    writer.on_trial_result(0, [], _tune_trial(tid), final_payload(state, rows, {"device": "cpu", "node": "here"}))
    with session_factory(make_engine(url))() as s:
        stored = get_trial(s, trial_id=tid).final_results
        assert sorted((r.checkpoint, r.attack) for r in stored) == [("best", "fgsm"), ("best", "pgd3"),
                                                                    ("last", "fgsm"), ("last", "pgd3")]
        for r in stored:
            assert r.n_total == 128
            assert r.n_robust <= min(r.n_correct, r.n_stable)  # robust examples are correct AND stable
            assert r.n_robust >= r.n_correct + r.n_stable - r.n_total  # |A and B| >= |A| + |B| - n
            assert (r.clean_acc, r.robust_acc, r.stability) == pytest.approx(
                (r.n_correct / 128, r.n_robust / 128, r.n_stable / 128))
        assert any(r.n_robust < r.n_correct for r in stored)  # the attack does move predictions


def test_non_finite_loss_fails_only_its_trial_with_the_epoch(store: tuple[str, int, list[int]]) -> None:
    url, sweep_id, (bad, other) = store
    trainer = Trainer(TrialConfig(**TINY, eps=8 / 255), device=CPU, data_root=None)
    method, calls = trainer.method, [0]

    def nan_from_epoch_2(model: Any, x: Any, y: Any, ctx: Any) -> MethodOutput:
        out = method(model, x, y, ctx)
        calls[0] += 1
        if calls[0] > 320 // 64:  # 5 batches per epoch: the loss is NaN from the first batch of epoch 2 on
            out.loss = out.loss * float("nan")
        return out

    trainer.method = nan_from_epoch_2
    with pytest.raises(NonFiniteLoss) as e:
        trainer.fit()
    assert e.value.epoch == 2 and str(e.value) == "non_finite_loss at epoch 2"
    with session_factory(make_engine(url)).begin() as s:  # the driver has started the sweep
        set_sweep_status(s, sweep_id=sweep_id, status="running", actor="driver")
    writer = DBWriter(url, sweep_id)  # the trainable's report for this exception, through the single writer
    writer.on_trial_start(0, [], _tune_trial(bad))
    writer.on_trial_result(0, [], _tune_trial(bad), {"kind": "failed", "error": str(e.value), "epoch": e.value.epoch})
    writer.on_trial_complete(0, [], _tune_trial(bad))
    with session_factory(make_engine(url))() as s:
        t = get_trial(s, trial_id=bad)
        assert t.status == "failed" and t.error.startswith("non_finite_loss") and "epoch 2" in t.error
        assert get_trial(s, trial_id=other).status == "queued"  # untouched
        assert get_sweep(s, sweep_id=sweep_id).status == "running"


def test_sat_at_eps_zero_is_the_clean_run() -> None:
    weights = {}
    for method in ("sat", "clean"):
        trainer = Trainer(TrialConfig(**{**TINY, "method": method, "eps": 0.0, "epochs": 1}), device=CPU, data_root=None)
        m = trainer.fit(on_epoch=lambda metrics, s: None)
        weights[method] = trainer.model.state_dict()
        assert m.epoch == 1
    for k, v in weights["clean"].items():
        assert torch.equal(v, weights["sat"][k]), k


def test_init_from_trial_ref_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TrialConfig(**{**TINY, "epochs": 1})
    source = Trainer(cfg, device=CPU, data_root=None)
    with torch.no_grad():
        for p in source.model.parameters():
            p.add_(0.5)  # weights no seeded init gives
    state = source.snapshot()
    trial_dir = tmp_path / "storage" / "sweep-1-grid" / "trial-7"
    for n in (1, 3):  # the latest checkpoint wins
        (trial_dir / f"checkpoint_00000{n}").mkdir(parents=True)
    torch.save(TrainState(model={k: torch.zeros_like(v) for k, v in state.model.items()}).to_dict(),
               trial_dir / "checkpoint_000001" / "state.pt")
    torch.save(state.to_dict(), trial_dir / "checkpoint_000003" / "state.pt")
    torch.save(state.model, tmp_path / "bare.pt")
    storage = str(tmp_path / "storage")  # the run context's storage path: the driver resolves trial refs with it
    resolved = resolve_init_from("trial:7", storage_path=storage)
    assert resolved == trial_dir / "checkpoint_000003" / "state.pt"
    for ref in (str(resolved), str(trial_dir), str(tmp_path / "bare.pt")):
        loaded = Trainer(cfg.model_copy(update={"init_from": ref, "seed": 5}), device=CPU, data_root=None)
        for k, v in loaded.model.state_dict().items():
            assert torch.equal(v, state.model[k]), (ref, k)
    monkeypatch.setenv("ROBUSTGRID_STORAGE_PATH", storage)  # never read: a trial ref needs the storage path passed in
    with pytest.raises(ValueError, match="storage path"):
        load_init_weights("trial:7")
    with pytest.raises(FileNotFoundError, match="init_from"):
        load_init_weights("trial:8", storage_path=storage)
    (tmp_path / "storage" / "sweep-1-other" / "trial-7").mkdir(parents=True)  # same id in another database
    with pytest.raises(ValueError, match="ambiguous"):
        load_init_weights("trial:7", storage_path=storage)


@pytest.mark.parametrize("kind", ["piecewise", "cosine"])
@pytest.mark.parametrize("epochs", [1, 4, 10])
@pytest.mark.parametrize("milestones", [(0.75, 0.9), (0.5, 1.0), (2, 3), (5, 12), (0.0,)])
def test_spec_time_schedule_rule_mirrors_the_worker(kind: str, epochs: int, milestones: tuple[float, ...]) -> None:
    schedule = ScheduleConfig(kind=kind, milestones=milestones)
    try:
        validate_schedule(schedule, epochs)
        worker_ok = True
    except ValueError:
        worker_ok = False
    assert (schedule_error(schedule, epochs) is None) == worker_ok
