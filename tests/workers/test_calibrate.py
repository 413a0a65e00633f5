"""Calibration: a tiny real training run on CPU gives a rate consistent with the planner's pass model, is stored
as JSON under the storage path, and `robustgrid plan` then costs trials with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from search_spaces.counting import analytic_counts
from search_spaces.plan import DEFAULT_MACS_PER_SECOND, load_calibration
from service.cli import app
from workers.calibrate import calibrate, probe_config

TINY = {"depths": (1, 1, 1), "widths": (0.5, 0.5, 0.5), "batch_size": 8, "steps": 2, "attack_steps": 1}


def test_probe_is_a_real_sat_trial_with_exactly_the_timed_steps() -> None:
    cfg = probe_config(torch.device("cpu"), **TINY)
    assert (cfg.method, cfg.dataset, cfg.n_train, cfg.batch_size, cfg.train_attack.steps) == ("sat", "synthetic", 16, 8, 1)
    default = probe_config(torch.device("cpu"))
    assert (default.arch, default.batch_size, default.train_attack.steps) == ("wrn-d1-1-1-w1-1-1", 32, 2)


def test_tiny_cpu_calibration_matches_the_pass_model() -> None:
    cal = calibrate(torch.device("cpu"), repeats=1, **TINY)
    p = cal.probe
    macs = analytic_counts("wrn", (1, 1, 1), (0.5, 0.5, 0.5), 10, 3, 32)[1]  # type: ignore[index]
    assert p["macs_per_image"] == macs and (p["steps"], p["precision"], p["arch"]) == (2, "fp32", "wrn-d1-1-1-w0.5-0.5-0.5")
    # one SAT step with PGD-1 is 4 + 2 forward-pass equivalents per example
    assert cal.macs_per_second * p["seconds_per_step"] == pytest.approx(macs * 8 * 6)
    assert 1e6 < cal.macs_per_second < 1e14 and cal.device.startswith("cpu: ")


def test_calibrate_command_stores_it_and_plan_uses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTGRID_STORAGE_PATH", str(tmp_path))
    runner = CliRunner()
    r = runner.invoke(app, ["plan", "--preset", "huang2021-width-stage3"])
    before = json.loads(r.stdout.splitlines()[-1])
    assert before["calibrated"] is False and before["macs_per_second"] == DEFAULT_MACS_PER_SECOND
    assert before["cost_unit"] == "device-hours"
    r = runner.invoke(app, ["calibrate", "--device", "cpu", "--depths", "1,1,1", "--widths", "0.5,0.5,0.5",
                            "--batch-size", "8", "--steps", "1", "--attack-steps", "1", "--repeats", "1"])
    assert r.exit_code == 0, r.output
    stored = json.loads((tmp_path / "calibration.json").read_text())
    assert stored == json.loads(r.stdout) and load_calibration(str(tmp_path)).macs_per_second == stored["macs_per_second"]
    assert {"device", "macs_per_second", "measured_at", "code_version", "probe"} <= set(stored)
    after = json.loads(runner.invoke(app, ["plan", "--preset", "huang2021-width-stage3"]).stdout.splitlines()[-1])
    assert after["calibrated"] is True and after["calibration_device"] == stored["device"]
    assert after["cost_unit"] == "cpu-hours"  # labelled by the calibrated device, not GPU-hours
    ratio = DEFAULT_MACS_PER_SECOND / stored["macs_per_second"]
    assert after["est_device_hours"] == pytest.approx(before["est_device_hours"] * ratio, rel=1e-3)


def test_calibrate_bad_probe_names_the_field() -> None:
    r = CliRunner().invoke(app, ["calibrate", "--device", "cpu", "--depths", "1,x,1", "--no-save"])
    assert r.exit_code == 2 and "depths" in r.output
