"""Every preset: its trial count matches its study's grid, it plans through the CLI, it runs at the study's
fidelity by default and scales down with the fidelity overrides; the studies' special cases (eps 0 is the clean
run, WAR's two phases, the fast eps* variant's phases, explicit preset parameters)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from search_spaces.plan import make_plan
from search_spaces.presets import list_presets, resolve
from search_spaces.presets.wu2021 import zeta_from_tuning
from search_spaces.spec import SpecError, SweepSpec, config_hash, expand
from service.cli import app

# preset -> trials of its study's grid (science.md): a new preset must add its count here
EXPECTED = {
    "demo": 4,
    "huang2021-depth-125": 125,  # {1,3,5,7,9}^3
    **{f"huang2021-{axis}-stage{s}": 5 for axis in ("depth", "width") for s in (1, 2, 3)},
    "huang2021-depth-width-25": 25,  # top-5 depths x top-5 widths
    "huang2021-scaling": 5,  # 5 scales
    "wu2021-lambda-trades": 18,  # 3 widths x 6 lambdas
    "wu2021-lambda-at": 15,  # 3 widths x 5 lambdas
    "wu2021-war": 6,  # phase 'tune': 6 lambdas on the thin network
    "xing2022-epsilon": 16,  # (clean + 7 eps) x 2 n_train
    "xing2022-epsilon-fast": 2,  # phase 'clean': the clean run at 2 n_train
}
NAMES = [p.name for p in list_presets()]


def _cfgs(name: str, overrides: dict | None = None) -> list:
    return [t.config for t in make_plan(resolve(name, overrides)).trials]


def test_every_preset_has_an_expected_count() -> None:
    assert sorted(EXPECTED) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_cli_plan_json_counts_match_the_study(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROBUSTGRID_STORAGE_PATH", str(tmp_path))  # no calibration there: the default rate
    for split in ("train", "test"):  # image-folder datasets (the demo's cifar10-jpeg) are sized from their tree
        for c in range(10):
            (tmp_path / split / f"c{c}").mkdir(parents=True)
            Image.new("RGB", (32, 32)).save(tmp_path / split / f"c{c}" / "0.png")
    r = CliRunner().invoke(app, ["plan", "--preset", name, "--json", "--data-root", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == EXPECTED[name]
    assert all(row["params"] > 0 and row["macs"] > 0 and row["est_device_seconds"] >= 0 for row in rows)


@pytest.mark.parametrize("name", NAMES)
def test_description_names_the_study_and_spec_round_trips(name: str) -> None:
    preset = next(p for p in list_presets() if p.name == name)
    assert name == "demo" or preset.description.startswith(("Huang et al. 2021", "Wu et al. 2021", "Xing et al. 2022"))
    spec = resolve(name)
    again = SweepSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert [config_hash(c) for c in expand(again)] == [config_hash(c) for c in expand(spec)]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "demo"])
def test_fidelity_overrides_scale_every_preset_down(name: str) -> None:
    full = _cfgs(name)
    cheap = _cfgs(name, {"epochs": 2, "n_train": [500], "width_multiplier": 0.5})
    assert {c.epochs for c in cheap} == {2} and {c.n_train for c in cheap} == {500}
    assert sorted(w for c in cheap for w in c.widths) == sorted(round(w / 2, 6) for c in full for w in c.widths
                                                             if c.n_train == full[0].n_train)


def test_huang_fidelity_is_robustwrn_madry_config() -> None:
    for c in _cfgs("huang2021-depth-125"):
        assert (c.method, c.epochs, c.lr, c.weight_decay, c.batch_size, c.grad_clip) == ("sat", 100, 0.1, 2e-4, 128, 5.0)
        assert c.schedule.milestones == (0.75, 0.9) and c.eps == pytest.approx(8 / 255)
        train, evaluation = (a.resolved_step_size(c.eps, c.norm) for a in (c.train_attack, c.eval_attack))
        assert (c.train_attack.steps, train, c.eval_attack.steps, evaluation) == \
            (10, pytest.approx(2 / 255), 20, pytest.approx(0.8 / 255))  # eps/4 and eps/10


def test_scaling_series_reaches_wrn34r() -> None:
    archs = [c.arch for c in _cfgs("huang2021-scaling")]
    assert archs == [f"wrn-d5-5-5-w{w}" for w in ("2.5-2.5-1", "5-5-2", "10-10-4", "15-15-6", "20-20-8")]
    assert [c.arch for c in _cfgs("huang2021-scaling", {"width": [8, 8, 8]})][-1] == "wrn-d5-5-5-w16-16-16"


def test_depth_width_25_takes_the_top5_as_parameters() -> None:
    default = {c.arch for c in _cfgs("huang2021-depth-width-25")}
    assert "wrn-d5-5-1-w10-10-2" in default and "wrn-d5-5-9-w10-10-10" in default
    mine = _cfgs("huang2021-depth-width-25", {"top_depths": [[7], [3, 5, 7, 9, 1], [3]], "top_widths": [[10], [10], [4]]})
    assert sorted(c.depths[1] for c in mine) == [1, 3, 5, 7, 9] and {c.widths for c in mine} == {(10, 10, 4)}
    with pytest.raises(SpecError) as e:
        resolve("huang2021-depth-width-25", {"top_depths": [[5], [5]]})
    assert e.value.field == "top_depths"


def test_wu_trades_grid_is_wrn34_k_at_trades_fidelity() -> None:
    cfgs = _cfgs("wu2021-lambda-trades")
    assert {(c.widths[0], c.lam) for c in cfgs} == {(k, lam) for k in (1, 5, 10) for lam in (6, 9, 12, 15, 18, 21)}
    c = cfgs[0]
    assert c.depths == (5, 5, 5) and len(set(c.widths)) == 1 and c.method == "trades"
    assert (c.epochs, c.schedule.milestones[0] * c.epochs, c.weight_decay) == (76, pytest.approx(74.0), 2e-4)
    assert (c.train_attack.resolved_step_size(c.eps, c.norm), c.train_attack.start) == (pytest.approx(0.007), "normal")
    assert {c.grad_clip for c in cfgs} == {None}  # the official TRADES code does not clip gradients
    at = _cfgs("wu2021-lambda-at")
    assert sorted({c.lam for c in at}) == [1.0, 1.25, 1.5, 1.75, 2.0] and {c.method for c in at} == {"gat"}


def test_war_two_phases() -> None:
    tune = _cfgs("wu2021-war")
    assert {c.widths for c in tune} == {(1, 1, 1)} and len({c.lam for c in tune}) == 6
    war = _cfgs("wu2021-war", {"phase": "war", "zeta": 0.75})
    assert [(c.method, c.widths[0], c.zeta, c.war_alpha, c.lam) for c in war] == [
        ("war_trades", 5, 0.75, 0.1, 0.0), ("war_trades", 10, 0.75, 0.1, 0.0)]
    assert {c.grad_clip for c in tune + war} == {None}  # TRADES fidelity: no gradient clipping
    assert len(_cfgs("wu2021-war", {"regulariser": "gat"})) == 5
    with pytest.raises(SpecError) as e:
        resolve("wu2021-war", {"phase": "war"})
    assert e.value.field == "zeta" and "war-zeta" in e.value.reason


def test_zeta_from_a_finished_tuning_sweep() -> None:
    final = [{"trial": 1, "checkpoint": "best", "attack": "pgd20", "robust_acc": 0.40},
             {"trial": 2, "checkpoint": "best", "attack": "pgd20", "robust_acc": 0.45},
             {"trial": 1, "checkpoint": "last", "attack": "pgd20", "robust_acc": 0.50}]
    epochs = [{"trial": 2, "epoch": e, "natural_risk": 1.0 / e, "robust_reg": 0.5} for e in (1, 2, 4)]
    more = [{"trial": 1, "epoch": 9, "natural_risk": 9, "robust_reg": 1}]
    assert zeta_from_tuning(final, epochs + more, attack="pgd20") == (0.5, 2)
    with pytest.raises(SpecError, match="no final pgd20 results"):
        zeta_from_tuning([], epochs, attack="pgd20")
    with pytest.raises(SpecError, match="no final cw20 results"):  # another attack's rows are not PGD-20's
        zeta_from_tuning(final, epochs, attack="cw20")


def test_xing_eps_zero_is_the_clean_run() -> None:
    cfgs = _cfgs("xing2022-epsilon")
    clean = [c for c in cfgs if c.eps == 0]
    assert [(c.method, c.n_train) for c in clean] == [("clean", 10_000), ("clean", None)]
    assert sorted({round(c.eps * 255, 6) for c in cfgs}) == [0, 0.5, 1, 2, 4, 8, 12, 16]
    assert {c.method for c in cfgs if c.eps > 0} == {"sat"} and {c.model for c in cfgs} == {"preactresnet18"}
    plan = make_plan(resolve("xing2022-epsilon"))
    by = {(t.config.method, t.config.n_train): t.est_seconds for t in plan.trials if t.config.eps in (0, 8 / 255)}
    assert by[("clean", 10_000)] < by[("sat", 10_000)] / 5  # the clean run costs no attack
    assert {c.method for c in _cfgs("xing2022-epsilon", {"method": "trades"}) if c.eps > 0} == {"trades"}


def test_xing_fast_phase1_is_shared_and_phase2_fine_tunes() -> None:
    fast = {config_hash(c) for c in _cfgs("xing2022-epsilon-fast")}
    assert fast <= {config_hash(c) for c in _cfgs("xing2022-epsilon")}  # the clean runs are the same trials
    ft = _cfgs("xing2022-epsilon-fast", {"phase": "finetune", "init_from": "trial:7", "attack": "fgsm"})
    assert [round(c.eps * 255, 6) for c in ft] == [0.5, 1, 2]
    assert {(c.method, c.init_from, c.epochs, c.n_train) for c in ft} == {("fgsm", "trial:7", 1, 10_000)}
    with pytest.raises(SpecError) as e:
        resolve("xing2022-epsilon-fast", {"phase": "finetune"})
    assert e.value.field == "init_from"


def test_unknown_override_names_the_key_and_the_preset_parameters() -> None:
    with pytest.raises(SpecError) as e:
        resolve("huang2021-scaling", {"colour": 3})
    assert e.value.field == "colour" and "width, depth" in e.value.reason


def test_war_zeta_command_reads_the_tuning_sweep(tmp_path: Path) -> None:
    from db.contract import EpochReport, FinalRow
    from db.engine import make_engine, session_factory, upgrade
    from db.results import upsert_epoch, upsert_final
    from db.sweeps import list_trials
    from service.schemas import SweepRequest
    from service.settings import Settings
    from service.submission import store_sweep

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path))
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with session_factory(engine)() as s:
        sweep, _ = store_sweep(s, SweepRequest(preset="wu2021-war", overrides={"epochs": 2}, name="tune"), settings)
        with s.begin():
            for i, t in enumerate(list_trials(s, sweep_id=sweep.id)):  # lambda 6..21; the lambda-12 run is best
                for epoch in (1, 2):
                    upsert_epoch(s, trial_id=t.id, report=EpochReport(epoch=epoch, natural_risk=0.5 + i,
                                                                      robust_reg=epoch))
                upsert_final(s, trial_id=t.id, row=FinalRow(checkpoint="best", attack="pgd20", epoch=2,
                                                            robust_acc=0.5 - abs(i - 2) / 10))
    r = CliRunner().invoke(app, ["war-zeta", "tune", "--database-url", settings.database_url])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["zeta"] == pytest.approx(2.5 / 2)  # (0.5 + 2) / robust_reg 2 at the last epoch
    assert "--set zeta=1.25" in r.output
