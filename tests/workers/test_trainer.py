"""The training loop and the final evaluation on a tiny synthetic setting: metrics, checkpoints, resumption."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from search_spaces.config import TrialConfig
from workers.final_eval import train_and_evaluate
from workers.trainable import epoch_report
from workers.trainer import NonFiniteLoss, Trainer, TrainState

CPU = torch.device("cpu")
TINY = dict(depths=(1, 1, 1), widths=(1, 1, 1), dataset="synthetic", n_train=320, val_size=128, n_test=128,
            epochs=2, batch_size=64, lr=0.05, train_attack={"steps": 2, "step_size": 0.01},
            eval_attack={"steps": 3, "step_size": None})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_and_evaluate_reports_every_epoch_and_both_checkpoints() -> None:
    seen: list[dict] = []
    state, rows = train_and_evaluate(TrialConfig(**TINY), device=CPU, data_root=None,
                                     on_epoch=lambda m, s: seen.append(m))
    assert [m["epoch"] for m in seen] == [1, 2] and state.epoch == 2
    for m in seen:
        assert 0 <= m["robust_acc"] <= 1 and 0 <= m["stability"] <= 1 and m["adv_loss_train"] > 0
        assert m["local_lipschitz"] > 0 and m["lam_t"] == pytest.approx(1.0)
        assert m["robust_reg"] == pytest.approx(m["adv_loss_train"] - m["natural_risk"], abs=1e-4)
    assert seen[1]["clean_loss_train"] < seen[0]["clean_loss_train"]  # it learns
    assert [(r.checkpoint, r.attack) for r in rows] == [("best", "pgd3"), ("last", "pgd3")]
    for r in rows:
        assert r.n_total == 128
        assert r.n_robust <= min(r.n_correct, r.n_stable)  # robust = correct AND stable
        assert r.n_robust >= r.n_correct + r.n_stable - r.n_total
        assert r.emp_lipschitz > 0 and len(r.emp_lipschitz_blocks) == 3


def test_best_equal_to_last_is_evaluated_once_with_identical_numbers() -> None:
    state, rows = train_and_evaluate(TrialConfig(**TINY, best_from=1.0), device=CPU, data_root=None)
    best, last = rows
    assert state.best_epoch == state.epoch == 2
    assert best.model_dump(exclude={"checkpoint", "device_seconds"}) == \
        last.model_dump(exclude={"checkpoint", "device_seconds"})
    assert last.device_seconds == 0.0


def test_resume_from_a_snapshot_matches_an_uninterrupted_run() -> None:
    cfg = TrialConfig(**TINY)
    whole: list[dict] = []
    train_and_evaluate(cfg, device=CPU, data_root=None, on_epoch=lambda m, s: whole.append(m))
    snaps: list[TrainState] = []

    def stop_after_first(m: dict, s: TrainState) -> None:
        snaps.append(TrainState.from_dict(torch.load(_roundtrip(s), weights_only=False)))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, device=CPU, data_root=None).fit(on_epoch=stop_after_first)
    resumed: list[dict] = []
    train_and_evaluate(cfg, device=CPU, data_root=None, resume=snaps[0], on_epoch=lambda m, s: resumed.append(m))
    assert [m["epoch"] for m in resumed] == [2]
    for k in ("clean_loss_train", "adv_loss_train", "robust_acc", "clean_acc"):
        assert resumed[0][k] == pytest.approx(whole[1][k], rel=1e-5), k


def _roundtrip(state: TrainState):  # what the trainable writes into a Tune checkpoint
    import io

    buf = io.BytesIO()
    torch.save(state.to_dict(), buf)
    buf.seek(0)
    return buf


def test_non_finite_loss_names_the_epoch() -> None:
    cfg = TrialConfig(**{**TINY, "lr": 1000.0, "grad_clip": None})  # the largest lr a config allows
    with pytest.raises(NonFiniteLoss) as e:
        train_and_evaluate(cfg, device=CPU, data_root=None)
    assert str(e.value).startswith("non_finite_loss at epoch") and e.value.epoch >= 1


def test_cli_train_runs_one_trial_without_ray(tmp_path) -> None:
    spec = {"depths": [[1], [1], [1]], "widths": [[1], [1], [1]], "dataset": "synthetic", "n_train": [128],
            "training": {k: v for k, v in TINY.items() if k not in ("depths", "widths", "dataset", "n_train")} | {"epochs": 1}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, "-m", "service.cli", "train", "--spec", str(path), "--device", "cpu",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())
    assert {r["checkpoint"] for r in rows} == {"best", "last"} and "epoch 1/1" in r.stderr


@pytest.mark.parametrize("select_on", ["test", "last"])
def test_val_size_zero_with_an_explicit_selection_rule_trains_to_the_end(select_on: str) -> None:
    """val_size = 0 used to crash at the first epoch eligible for the best checkpoint; 'test' selects on the test
    set (the studies' protocol), 'last' reports the last epoch as best."""
    seen: list[dict] = []
    cfg = TrialConfig(**{**TINY, "val_size": 0, "select_on": select_on, "best_from": 0.0})
    state, rows = train_and_evaluate(cfg, device=CPU, data_root=None, on_epoch=lambda m, s: seen.append(m))
    assert state.epoch == 2 and [r.checkpoint for r in rows] == ["best", "last"]
    if select_on == "test":
        assert all(0 <= m["robust_acc"] <= 1 for m in seen)
        best = max(range(2), key=lambda i: (seen[i]["robust_acc"], -i))
        assert state.best_epoch == best + 1 and state.best_robust_acc == seen[best]["robust_acc"]
        reports = [epoch_report(m) for m in seen]  # the test set's per-epoch losses reach the store (eps* reads them)
        assert all(r.adv_loss_test > 0 and r.clean_loss_test > 0 and r.adv_loss_val is None for r in reports)
    else:
        assert "robust_acc" not in seen[0] and state.best_epoch is None and rows[1].device_seconds == 0.0


def test_trial_settings_reach_the_model_and_the_attacks() -> None:
    from workers.trainer import eval_attack

    for shortcut in ("raw", "preact"):
        cfg = TrialConfig(**{**TINY, "widths": (4, 2, 1), "wrn_shortcut": shortcut})
        model = Trainer(cfg, device=CPU, data_root=None).model
        assert model.block2.layer[0].shortcut_from_raw is (shortcut == "raw")  # 64 -> 64 channels at stride 2
    cfg = TrialConfig(**{**TINY, "eval_attack": {"steps": 3, "kappa": 7.0}})
    assert eval_attack(cfg, "cw").kappa == 7.0
    assert eval_attack(cfg, "pgd").step_size == pytest.approx(cfg.eps / 10)
