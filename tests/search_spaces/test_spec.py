"""Spec expansion: products, zips, method defaults, duplicates, and errors that name the field."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from search_spaces.config import TrialConfig
from search_spaces.spec import SpecError, SweepSpec, config_hash, expand


def test_per_stage_product_and_arch_keys() -> None:
    cfgs = expand(SweepSpec(depths=[[1, 3], [5], [0, 5]], widths=[[10], [4, 10], [10]]))
    assert len(cfgs) == 2 * 2 * 2
    archs = {c.arch for c in cfgs}
    assert "wrn-d1-5-0-w10-4-10" in archs and "wrn-d3-5-5-w10-10-10" in archs
    assert len(archs) == 8


def test_gamma_scales_widths() -> None:
    (cfg,) = expand(SweepSpec(widths=[[10], [10], [4]], gamma=[2.0]))
    assert cfg.widths == (20.0, 20.0, 8.0) and cfg.arch == "wrn-d5-5-5-w20-20-8"


def test_scalars_become_axes_and_method_defaults_apply() -> None:
    cfgs = expand(SweepSpec(method=["sat", "trades"], eps=0.03, seeds=[0, 1]))
    assert len(cfgs) == 4
    trades = [c for c in cfgs if c.method == "trades"]
    assert all(c.lam == 6.0 and _step(c) == pytest.approx(0.007 * 0.03 / (8 / 255)) and c.train_attack.start == "normal"
               for c in trades)
    sat = [c for c in cfgs if c.method == "sat"]
    assert all(c.lam == 1.0 and _step(c) == pytest.approx(0.03 / 4) for c in sat)


def test_explicit_values_beat_method_defaults() -> None:
    (cfg,) = expand(SweepSpec(method="trades", lam=[9.0], training={"train_attack": {"step_size": 0.01}}))
    assert cfg.lam == 9.0 and cfg.train_attack.step_size == 0.01 and cfg.train_attack.start == "normal"


def test_zip_pairs_axes() -> None:
    spec = SweepSpec(eps=[0.0, 2 / 255, 8 / 255], seeds=[1, 2, 3], zip=[["eps", "seeds"]])
    assert [(c.eps, c.seed) for c in expand(spec)] == [(0.0, 1), (2 / 255, 2), (8 / 255, 3)]


def test_zip_of_mismatched_lengths_names_the_numbers() -> None:
    with pytest.raises(SpecError) as e:
        expand(SweepSpec(eps=[0.0, 0.1], seeds=[1, 2, 3], zip=[["eps", "seeds"]]))
    assert e.value.field == "zip" and "eps=2" in e.value.reason and "seeds=3" in e.value.reason


def test_duplicates_removed_and_hash_stable() -> None:
    cfgs = expand(SweepSpec(depths=[[5, 5], [5], [5]]))
    assert len(cfgs) == 1
    assert config_hash(cfgs[0]) == config_hash(TrialConfig.model_validate_json(cfgs[0].model_dump_json()))


def test_clean_method_forces_eps_zero() -> None:
    (cfg,) = expand(SweepSpec(method="clean", eps=[8 / 255]))
    assert cfg.eps == 0.0


def test_spec_json_round_trip() -> None:
    spec = SweepSpec(depths=[[1, 3], [5], [5]], method=["gat"], lam=[1.0, 1.5], zip=[])
    again = SweepSpec(**json.loads(spec.model_dump_json()))
    assert again == spec and len(expand(again)) == 4


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"eps": [1.5]}, "eps", "[0, 1]"),
        ({"widths": [[-2], [10], [10]]}, "widths", "<= 0"),
        ({"depths": [[-1], [5], [5]]}, "depths", "negative"),
        ({"depths": [[], [5], [5]]}, "depths", "empty grid"),
        ({"method": ["bogus"]}, "method", "unknown method"),
        ({"dataset": "imagenet"}, "dataset", "unknown dataset"),
        ({"lam": [-1.0]}, "lam", ">= 0"),
        ({"zip": [["eps", "colour"]]}, "zip", "unknown axis"),
    ],
)
def test_bad_specs_name_the_field(kwargs: dict, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as e:
        SweepSpec(**kwargs)
    err = e.value.errors()[0]
    assert tuple(err["loc"][:1]) == (field,) or field in str(err["msg"]), err
    assert words in str(err["msg"])


def test_all_zero_depths_fail_at_expansion_with_the_field() -> None:
    with pytest.raises(SpecError) as e:
        expand(SweepSpec(depths=[[0], [0], [0]]))
    assert e.value.field == "depths"


def test_bad_training_field_is_named() -> None:
    with pytest.raises(SpecError) as e:
        expand(SweepSpec(training={"epochs": 0}))
    assert e.value.field == "training.epochs"
    with pytest.raises(SpecError) as e:
        expand(SweepSpec(training={"colour": 3}))
    assert e.value.field == "training.colour"


# ------------------------------------------------------------------- reference defaults (issue 11, items 1, 2, 6)

EPS8 = 8 / 255


def _step(cfg: TrialConfig, which: str = "train_attack") -> float:
    return getattr(cfg, which).resolved_step_size(cfg.eps, cfg.norm)


def test_step_sizes_are_relative_to_eps_and_the_norm() -> None:
    assert _step(TrialConfig(train_attack={"steps": 5})) == pytest.approx(2 / 255)  # no step given: eps/4
    assert _step(TrialConfig(eps=0.5, norm="l2", train_attack={"steps": 5})) == pytest.approx(2.5 * 0.5 / 5)
    sat = TrialConfig()
    assert _step(sat) == pytest.approx(2 / 255) and _step(sat, "eval_attack") == pytest.approx(0.8 / 255)
    at16 = TrialConfig(eps=16 / 255)
    assert _step(at16) == pytest.approx(4 / 255) and _step(at16, "eval_attack") == pytest.approx(1.6 / 255)
    l2 = TrialConfig(eps=0.5, norm="l2")
    assert _step(l2) == pytest.approx(2.5 * 0.5 / 10)  # PGD-10 training: 2.5 eps / steps
    assert _step(l2, "eval_attack") == pytest.approx(2.5 * 0.5 / 20)  # PGD-20 evaluation: 2.5 eps / steps


@pytest.mark.parametrize("eps_255", [0.5, 8.0, 16.0])
def test_fgsm_rs_step_is_1_25_eps(eps_255: float) -> None:
    (cfg,) = expand(SweepSpec(method="fgsm", eps=eps_255 / 255))
    assert cfg.train_attack.name == "fgsm" and cfg.train_attack.start == "uniform"
    assert _step(cfg) == pytest.approx(1.25 * eps_255 / 255)


def test_trades_and_mart_steps_are_0_007_at_8_255_and_scale_with_eps() -> None:
    for method in ("trades", "mart", "war_trades"):
        (cfg,) = expand(SweepSpec(method=method, eps=EPS8))
        assert _step(cfg) == pytest.approx(0.007) and cfg.train_attack.start == "normal", method
        (cfg,) = expand(SweepSpec(method=method, eps=16 / 255))
        assert _step(cfg) == pytest.approx(0.014), method
    (cfg,) = expand(SweepSpec(method="trades", eps=0.5, norm="l2"))
    assert _step(cfg) == pytest.approx(2 * 0.5 / 10)  # TRADES' L2 code: SGD lr = 2 eps / steps


def test_absolute_step_stays_possible_and_old_stored_configs_load() -> None:
    (cfg,) = expand(SweepSpec(method="trades", training={"train_attack": {"step_size": 0.01}}))
    assert _step(cfg) == 0.01 and cfg.train_attack.start == "normal"
    # a config stored before relative steps: absolute training step, eval step None (eps/10)
    old = {"train_attack": {"name": "pgd", "steps": 10, "step_size": 2 / 255, "start": "uniform"},
           "eval_attack": {"name": "pgd", "steps": 20, "step_size": None, "start": "uniform"}}
    cfg = TrialConfig.model_validate_json(json.dumps(old | {"eps": 16 / 255}))
    assert _step(cfg) == pytest.approx(2 / 255) and _step(cfg, "eval_attack") == pytest.approx(1.6 / 255)


def test_val_size_zero_needs_an_explicit_selection_rule() -> None:
    with pytest.raises(SpecError) as e:
        expand(SweepSpec(training={"val_size": 0}))
    assert e.value.field == "training.val_size" and "select_on" in e.value.reason
    for rule in ("test", "last"):
        (cfg,) = expand(SweepSpec(training={"val_size": 0, "select_on": rule}))
        assert cfg.select_on == rule
    assert TrialConfig().select_on == "val"


def test_reference_defaults_of_mart_fgsm_wrn_and_cw() -> None:
    (mart,) = expand(SweepSpec(method="mart"))
    assert mart.train_attack.start == "normal"  # MART's attack starts at x + 0.001 N(0, 1)
    (fgsm,) = expand(SweepSpec(method="fgsm"))
    assert fgsm.bn_mode_attack == "train"  # Wong et al. generate FGSM in train mode
    (sat,) = expand(SweepSpec(method="sat"))
    assert sat.bn_mode_attack == "eval" and sat.wrn_shortcut == "raw" and sat.eval_attack.kappa == 50.0
    cfg = TrialConfig(wrn_shortcut="preact", eval_attack={"steps": 20, "kappa": 0.0})
    assert cfg.wrn_shortcut == "preact" and cfg.eval_attack.kappa == 0.0
    with pytest.raises(ValidationError, match="wrn_shortcut"):
        TrialConfig(wrn_shortcut="pre")
