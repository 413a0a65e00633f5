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
    assert all(c.lam == 6.0 and c.train_attack.step_size == 0.007 and c.train_attack.start == "normal" for c in trades)
    sat = [c for c in cfgs if c.method == "sat"]
    assert all(c.lam == 1.0 and c.train_attack.step_size == pytest.approx(2 / 255) for c in sat)


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
