"""Plans: exact parameter and FLOP counts (closed form = meta-device count), constraints and limits applied
before launch, the cost model and its calibration, and the spec stored with the sweep."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search_spaces.config import TrialConfig
from search_spaces.counting import analytic_counts
from search_spaces.plan import (
    DEFAULT_MACS_PER_SECOND,
    Calibration,
    estimate_seconds,
    load_calibration,
    make_plan,
    save_calibration,
)
from search_spaces.presets import get_preset, resolve
from search_spaces.spec import SpecError, SweepSpec, config_hash, expand


def test_depth_125_preset_plan() -> None:
    plan = make_plan(resolve("huang2021-depth-125"))
    assert len(plan.trials) == 125
    assert len({t.arch for t in plan.trials}) == 125
    wrn34 = next(t for t in plan.trials if t.arch == "wrn-d5-5-5-w10-10-10")
    assert wrn34.params == 46_160_474
    assert plan.totals()["params_max"] == max(t.params for t in plan.trials)
    assert all(t.macs > 0 and t.est_seconds > 0 for t in plan.trials)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_per_stage_presets_have_five(stage: int) -> None:
    assert len(make_plan(resolve(f"huang2021-depth-stage{stage}")).trials) == 5
    plan = make_plan(resolve(f"huang2021-width-stage{stage}"))
    assert sorted(t.config.widths[stage - 1] for t in plan.trials) == [2, 4, 6, 8, 10]


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
    assert e.value.field == "spec" and "125 trials exceed the maximum of 100 (setting max_trials)" in e.value.reason
    assert len(make_plan(resolve("huang2021-depth-125")).trials) == 125  # the default maximum is 2000


def test_cli_plan_json_prints_125_distinct() -> None:
    out = subprocess.run([sys.executable, "-m", "service.cli", "plan", "--preset", "huang2021-depth-125", "--json"],
                         capture_output=True, text=True, check=True, timeout=300).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 125 and len({r["arch"] for r in rows}) == 125
    assert {"arch", "depths", "widths", "params", "macs"} <= set(rows[0])
    assert next(r for r in rows if r["arch"] == "wrn-d5-5-5-w10-10-10")["params"] == 46_160_474


def test_cli_bad_input_is_one_line() -> None:
    r = subprocess.run([sys.executable, "-m", "service.cli", "plan", "--preset", "nope"], check=False,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and r.stderr.startswith("error: preset:")
    r = subprocess.run([sys.executable, "-m", "service.cli", "plan", "--preset", "demo", "--set", "eps=[2]"],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 2 and "eps" in r.stderr and "[0, 1]" in r.stderr


def test_closed_form_counts_equal_the_meta_device_counts() -> None:
    from workers.models import model_counts

    rng = random.Random(0)
    for _ in range(30):
        depths = tuple(rng.choice([0, 1, 2, 3, 5]) for _ in range(3)) if rng.random() > 0.1 else (0, 0, 5)
        widths = tuple(rng.choice([0.25, 0.5, 1, 2.5, 4, 10]) for _ in range(3))
        classes = rng.choice([10, 100])
        if not any(depths):
            continue
        assert analytic_counts("wrn", depths, widths, classes, 3, 32) == model_counts(
            "wrn", depths=depths, widths=widths, num_classes=classes), (depths, widths)
    for depths, widths in [((2, 2, 2, 2), (1, 1, 1, 1)), ((1, 0, 3, 2), (0.5, 1, 2, 0.25))]:
        assert analytic_counts("preactresnet18", depths, widths, 10, 3, 32) == model_counts(
            "preactresnet18", depths=depths, widths=widths)
    assert analytic_counts("wrn", (5, 5, 5), (10, 10, 10), 10, 3, 32) == (46_160_474, 6_658_906_368)
    assert analytic_counts("smallcnn", (1,), (1,), 10, 3, 32) is None  # built on meta instead


@pytest.mark.parametrize("model", ["wrn", "preactresnet18", "densenet_bc"])
def test_closed_form_counts_equal_the_built_model_over_deep_and_wide_grids(model: str) -> None:
    """Deeper stages (up to 40 blocks), fractional and wide widths, odd and larger images, 100 classes: the closed
    form (a stage costs two block counts) equals the network built on the meta device."""
    from workers.models import model_counts

    rng = random.Random(model)
    stages = {"wrn": 3, "preactresnet18": 4, "densenet_bc": 3}[model]
    for _ in range(8):
        depths = tuple(rng.choice([0, 1, 2, 7, 16, 40]) for _ in range(stages))
        if not any(depths):
            depths = (3,) * stages
        n_widths = rng.choice([1, 3]) if model == "densenet_bc" else stages
        widths = tuple(rng.choice([0.25, 1, 2.5, 12, 12.5, 24]) for _ in range(n_widths))
        classes, size = rng.choice([10, 100]), rng.choice([32, 33, 64])
        assert analytic_counts(model, depths, widths, classes, 3, size) == model_counts(
            model, depths=depths, widths=widths, num_classes=classes, input_size=size), (depths, widths, size)
    assert analytic_counts("densenet_bc", (16, 16, 16), (12,), 10, 3, 32)[0] == 769_162  # DenseNet-BC-100, k=12


def test_the_largest_network_a_spec_allows_is_counted_in_microseconds() -> None:
    """Counting is closed form per stage: 1,000 blocks per stage cost what 2 do (the block-by-block loop took
    ~70 s for 200,000,000 blocks); the largest WRN a spec allows still fits the store's 64-bit integers."""
    from search_spaces.config import MAX_STAGE_DEPTH, MAX_WIDTH

    t0 = time.perf_counter()
    for model, n in (("wrn", 3), ("densenet_bc", 3), ("preactresnet18", 4)):
        params, macs = analytic_counts(model, (MAX_STAGE_DEPTH,) * n, (MAX_WIDTH,) * n, 100, 3, 32)
        assert 0 < params < 2**63 and 0 < macs < 2**63
    assert time.perf_counter() - t0 < 0.1
    p1, _ = analytic_counts("wrn", (1, 1, 1), (10, 10, 10), 10, 3, 32)
    p2, _ = analytic_counts("wrn", (2, 1, 1), (10, 10, 10), 10, 3, 32)
    p1000, _ = analytic_counts("wrn", (1000, 1, 1), (10, 10, 10), 10, 3, 32)
    assert p1000 - p1 == 999 * (p2 - p1)  # each further block of stage 1 adds the same count


def test_planning_the_125_grid_is_fast_and_imports_no_torch() -> None:
    code = ("import sys, time; t = time.perf_counter(); from search_spaces.plan import make_plan; "
            "from search_spaces.presets import resolve; p = make_plan(resolve('huang2021-depth-125')); "
            "print(len(p.trials), time.perf_counter() - t, 'torch' in sys.modules)")
    n, seconds, torch_loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                              check=True, timeout=60).stdout.split()
    assert (n, torch_loaded) == ("125", "False") and float(seconds) < 2.0


def test_min_and_flop_constraints_and_the_numbers_of_an_empty_result() -> None:
    spec = SweepSpec(depths=[[1, 3, 5], [5], [5]], constraints={"min_params": 45_000_000, "max_macs": 6_000_000_000})
    assert [t.arch for t in make_plan(spec).trials] == ["wrn-d3-5-5-w10-10-10"]
    with pytest.raises(SpecError) as e:
        make_plan(SweepSpec(depths=[[1, 3], [5], [5]], constraints={"min_macs": 10**11}))
    assert e.value.field == "constraints"
    assert "min_macs=100,000,000,000" in e.value.reason and "none of the 2 trials" in e.value.reason
    assert "params 44,314,714..45,237,594, macs 4,771,469,568..5,715,187,968" in e.value.reason


def test_estimate_counts_passes_per_method() -> None:
    common = {"n_train": 1000, "val_size": 100, "n_test": 100, "epochs": 2}
    # sat: (4 + 2*10) per train example, (2 + 2*20) per eval example: 2*(1000*24 + 100*42) + 2*100*42 = 64,800
    assert estimate_seconds(TrialConfig(method="sat", **common), 10**6, 1e9) == pytest.approx(64.8)
    assert estimate_seconds(TrialConfig(method="trades", **common), 10**6, 1e9) == pytest.approx(70.8)  # 7 + 20
    assert estimate_seconds(TrialConfig(method="clean", eps=0.0, **common), 10**6, 1e9) == pytest.approx(6.4)  # 3; 1


def test_plan_uses_the_stored_calibration(tmp_path: Path) -> None:
    spec = resolve("huang2021-width-stage3")
    default = make_plan(spec, storage_path=str(tmp_path))
    assert default.totals()["calibrated"] is False and default.totals()["macs_per_second"] == DEFAULT_MACS_PER_SECOND
    cal = Calibration(device="cpu: test", macs_per_second=2.5e13, measured_at="2026-01-01T00:00:00+00:00",
                      code_version="0+test", probe={"arch": "wrn-d1-1-1-w1-1-1"})
    path = save_calibration(cal, str(tmp_path))
    assert path == tmp_path / "calibration.json" and load_calibration(str(tmp_path)) == cal
    plan = make_plan(spec, storage_path=str(tmp_path))
    assert plan.totals()["calibrated"] is True and plan.totals()["calibration_device"] == "cpu: test"
    for a, b in zip(plan.trials, default.trials, strict=True):
        assert a.est_seconds == pytest.approx(b.est_seconds * 4)  # 1e14 / 2.5e13
    path.write_text('{"device": "x", "macs_per_second": -1, "measured_at": "now"}')
    assert load_calibration(str(tmp_path)) is None and make_plan(spec, storage_path=str(tmp_path)).calibration is None
    assert load_calibration("s3://bucket/results") is None
    with pytest.raises(SpecError) as e:
        save_calibration(cal, "s3://bucket/results")
    assert e.value.field == "storage_path"


def test_the_spec_is_stored_with_the_sweep_and_expands_to_its_trials(tmp_path: Path) -> None:
    from db.engine import make_engine, session_factory, upgrade
    from db.sweeps import get_sweep, list_trials
    from search_spaces.stored import StoredSweep
    from service.schemas import SweepRequest
    from service.settings import Settings
    from service.submission import store_sweep

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path))
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with session_factory(engine)() as s:
        sweep, plan = store_sweep(s, SweepRequest(preset="xing2022-epsilon", overrides={"epochs": 2}), settings)
        stored = StoredSweep.model_validate(json.loads(json.dumps(get_sweep(s, sweep_id=sweep.id).spec)))
        hashes = [t.config_hash for t in list_trials(s, sweep_id=sweep.id)]
    spec = stored.spec
    assert stored.data_root is None and stored.extensions == [] and not stored.is_search
    assert spec.zip == [["method", "eps"]] and [config_hash(c) for c in expand(spec)] == hashes
    assert len(hashes) == 16 == len(plan.trials)


@pytest.mark.parametrize(
    ("request_body", "field", "words"),
    [
        ({"spec": {"constraints": {"max_params": 10}}}, "constraints", "none of the 1 trials (params 46,160,474"),
        ({"preset": "huang2021-depth-125", "overrides": {"epochs": 1}}, "max_trials",
         "multiply to 125 configurations, more than the limit of 100 trials"),
        ({"spec": {"eps": [0.0, 0.1], "seeds": [1, 2, 3], "zip": [["eps", "seeds"]]}}, "zip", "eps=2, seeds=3"),
        ({"spec": {"zip": [["eps", "colour"]]}}, "zip", "unknown axis 'colour'"),
        ({"spec": {"colour": [1]}}, "colour", "Extra inputs"),
        ({"preset": "huang2021-scaling", "overrides": {"colour": 1}}, "colour", "unknown override"),
    ],
)
def test_api_plan_bad_input_is_422_with_field_and_numbers(tmp_path: Path, request_body: dict, field: str,
                                                           words: str) -> None:
    from testkit.api_client import api_client

    from service.settings import Settings

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path), max_trials=100)
    with api_client(settings) as client:
        r = client.post("/api/v1/plan", json=request_body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    # model-level spec checks (zip) arrive at loc (body, spec) with the field leading the message
    assert (field in detail["loc"] or f"{field}: " in detail["msg"]) and words in detail["msg"], detail
