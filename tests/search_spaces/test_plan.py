"""Presets and plans: the studies' grid sizes, exact parameter counts, constraints, limits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from search_spaces.plan import make_plan
from search_spaces.presets import get_preset, list_presets, resolve
from search_spaces.spec import SpecError, SweepSpec


def test_depth_125_preset_plan() -> None:
    plan = make_plan(resolve("huang2021-depth-125"))
    assert len(plan.trials) == 125
    assert len({t.arch for t in plan.trials}) == 125
    wrn34 = next(t for t in plan.trials if t.arch == "wrn-d5-5-5-w10-10-10")
    assert wrn34.params == 46_160_474
    assert plan.totals()["params_max"] == max(t.params for t in plan.trials)
    assert all(t.flops > 0 and t.est_seconds > 0 for t in plan.trials)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_per_stage_presets_have_five(stage: int) -> None:
    assert len(make_plan(resolve(f"huang2021-depth-stage{stage}")).trials) == 5
    plan = make_plan(resolve(f"huang2021-width-stage{stage}"))
    assert sorted(t.config.widths[stage - 1] for t in plan.trials) == [2, 4, 6, 8, 10]


def test_every_preset_plans_and_describes_itself() -> None:
    for p in list_presets():
        assert p.description
        assert make_plan(resolve(p.name, {"epochs": 1})).trials


def test_fidelity_overrides() -> None:
    spec = resolve("huang2021-width-stage3", {"epochs": 2, "n_train": [1000], "width_multiplier": 0.5})
    cfgs = [t.config for t in make_plan(spec).trials]
    assert {c.epochs for c in cfgs} == {2} and {c.n_train for c in cfgs} == {1000}
    assert sorted(c.widths for c in cfgs)[0] == (5.0, 5.0, 1.0)


def test_unknown_preset() -> None:
    with pytest.raises(SpecError) as e:
        get_preset("nope")
    assert e.value.field == "preset" and "huang2021-depth-125" in e.value.reason


def test_constraints_filter_and_can_leave_nothing() -> None:
    spec = SweepSpec(depths=[[1, 3, 5], [5], [5]], constraints={"max_params": 45_500_000})
    plan = make_plan(spec)
    assert plan.trials and [t.arch for t in plan.trials] == ["wrn-d1-5-5-w10-10-10", "wrn-d3-5-5-w10-10-10"]
    with pytest.raises(SpecError) as e:
        make_plan(SweepSpec(constraints={"max_params": 10}))
    assert e.value.field == "constraints"


def test_trial_limit() -> None:
    with pytest.raises(SpecError) as e:
        make_plan(resolve("huang2021-depth-125"), max_trials=100)
    assert "125 trials exceed the maximum of 100" in e.value.reason


def test_cli_plan_json_prints_125_distinct() -> None:
    out = subprocess.run([sys.executable, "-m", "service.cli", "plan", "--preset", "huang2021-depth-125", "--json"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 125 and len({r["arch"] for r in rows}) == 125
    assert {"arch", "depths", "widths", "params", "flops"} <= set(rows[0])
    assert next(r for r in rows if r["arch"] == "wrn-d5-5-5-w10-10-10")["params"] == 46_160_474


def test_cli_bad_input_is_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "service.cli", "plan", "--preset", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: preset:")
    r = subprocess.run([sys.executable, "-m", "service.cli", "plan", "--preset", "demo", "--set", "eps=[2]"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "eps" in r.stderr and "[0, 1]" in r.stderr
