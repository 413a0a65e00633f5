"""Bad input caught at spec time, naming the field: schedule milestones outside the epochs, unknown final attacks,
WAR without a positive zeta, a malformed init_from; and the fine-tuning sweep of the eps* fast approximation."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from search_spaces.config import ScheduleConfig, TrialConfig, schedule_error
from search_spaces.finetune import finetune_spec
from search_spaces.spec import SpecError, SweepSpec, expand

E = 1 / 255


def _field(training: dict[str, Any], **spec: Any) -> str:
    with pytest.raises(SpecError) as e:
        expand(SweepSpec(training=training, **spec))
    return e.value.field


@pytest.mark.parametrize(("milestones", "epochs"), [((5, 12), 10), ((0.5, 1.0), 4), ((10,), 10), ((0.0,), 100)])
def test_milestones_outside_the_epochs(milestones: tuple[float, ...], epochs: int) -> None:
    training = {"epochs": epochs, "schedule": {"kind": "piecewise", "milestones": list(milestones)}}
    assert _field(training) == "training.schedule.milestones"
    with pytest.raises(ValidationError) as e:
        TrialConfig(epochs=epochs, schedule=ScheduleConfig(milestones=milestones))
    assert e.value.errors()[0]["loc"] == ("schedule", "milestones")


def test_milestones_inside_the_epochs_and_other_kinds_pass() -> None:
    assert schedule_error(ScheduleConfig(milestones=(0.75, 0.9)), 4) is None  # epochs 3 and 3.6
    assert schedule_error(ScheduleConfig(milestones=(100, 150)), 200) is None
    assert "outside (0, 10)" in schedule_error(ScheduleConfig(milestones=(100,)), 10)
    assert len(expand(SweepSpec(training={"epochs": 2, "schedule": {"kind": "cosine", "milestones": [50]}}))) == 1


@pytest.mark.parametrize("attacks", [["pgd", "square"], []])
def test_final_attacks_must_be_evaluation_attacks(attacks: list[str]) -> None:
    assert _field({"final_attacks": attacks}) == "training.final_attacks"
    assert expand(SweepSpec(training={"final_attacks": ["pgd", "fgsm", "cw", "autoattack"]}))[0].final_attacks == (
        "pgd", "fgsm", "cw", "autoattack")


@pytest.mark.parametrize("zeta", [0.0, -1.0, None])
def test_war_needs_a_positive_zeta(zeta: float | None) -> None:
    assert _field({"zeta": zeta}, method=["war_gat"]) == "training.zeta"


def test_war_zeta_default_and_explicit() -> None:
    assert [c.zeta for c in expand(SweepSpec(method=["war_gat", "war_trades"]))] == [1.0, 1.0]  # METHOD_DEFAULTS
    assert expand(SweepSpec(method=["war_trades"], training={"zeta": 0.3}))[0].zeta == 0.3


@pytest.mark.parametrize("ref", ["trial:", "trial:abc", "trial:-3", ""])
def test_init_from_must_be_a_trial_id_or_a_path(ref: str) -> None:
    assert _field({"init_from": ref}) == "training.init_from"


def test_init_from_accepts_trial_ids_and_paths() -> None:
    assert expand(SweepSpec(training={"init_from": "trial:12"}))[0].init_from == "trial:12"
    assert expand(SweepSpec(training={"init_from": "/runs/trial-12/checkpoint_000003"}))[0].init_from is not None


CLEAN = TrialConfig(depths=(1, 1, 1), widths=(2.0, 2.0, 2.0), method="clean", eps=0.0, dataset="cifar10-jpeg",
                    dataset_label="cifar10-jpeg", n_train=2000, seed=3, epochs=30, lr=0.1, batch_size=64,
                    train_attack={"steps": 3, "step_size": 4 / 255}, final_attacks=("pgd", "fgsm"))  # fmt: skip


@pytest.mark.parametrize("method", ["sat", "fgsm"])
def test_finetune_spec_keeps_the_clean_run_but_eps_method_and_schedule(method: str) -> None:
    spec = finetune_spec(CLEAN, clean_trial_id=41, eps=[2 * E, E, 4 * E, E], method=method, epochs=3)
    configs = expand(spec)
    assert [c.eps for c in configs] == [E, 2 * E, 4 * E]
    changed = {"method", "eps", "epochs", "lr", "schedule", "init_from", "lam", "train_attack"}
    for c in configs:
        assert (c.method, c.epochs, c.lr, c.schedule.kind, c.init_from) == (method, 3, 0.01, "constant", "trial:41")
        same = {k: v for k, v in c.model_dump().items() if k not in changed}
        assert same == {k: v for k, v in CLEAN.model_dump().items() if k not in changed}
        if method == "sat":
            assert c.train_attack == CLEAN.train_attack
        else:  # FGSM training's reference attack (Wong et al.: one step, uniform start)
            assert (c.train_attack.name, c.train_attack.steps, c.train_attack.start) == ("fgsm", 1, "uniform")
    assert spec.name == f"finetune-trial41-{method}"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"eps": [E]}, "eps"), ({"eps": [0.0, E]}, "eps"), ({"eps": [E, E]}, "eps"),
    ({"eps": [E, 2 * E], "method": "trades"}, "method"),
])  # fmt: skip
def test_finetune_spec_bad_input(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as e:
        finetune_spec(CLEAN, clean_trial_id=1, **kwargs)
    assert e.value.field == field


def test_finetune_needs_a_clean_run() -> None:
    with pytest.raises(SpecError) as e:
        finetune_spec(CLEAN.model_copy(update={"eps": 8 / 255, "method": "sat"}), clean_trial_id=5, eps=[E, 2 * E])
    assert e.value.field == "init_from" and "trial 5" in e.value.reason
