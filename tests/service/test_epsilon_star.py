"""eps* of stored sweeps (service/epsilon_star.py) on a real SQLite database filled through db/ functions, against
hand-computed interpolations; the route's 200/404/422 and the CLI's output and one-line error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from db.contract import EpochReport, FinalRow
from db.engine import make_engine, session_factory, upgrade
from db.results import upsert_epoch, upsert_final
from db.sweeps import NotFound, create_sweep, get_trial, mark_trial
from search_spaces.spec import SpecError
from service.epsilon_star import catastrophic_overfitting, epsilon_star_for_sweep

E = 1 / 255  # one pixel step, [0, 1] units
ARCH = "wrn-d1-1-1-w2-2-2"


def _trial(i: int, method: str, eps: float, seed: int = 0, **config: Any) -> dict[str, Any]:
    return {"idx": i, "config": {"method": method, "eps": eps, "seed": seed, "epochs": 3, **config},
            "config_hash": f"h{i}-{method}-{eps}-{seed}-{sorted(config.items())}", "arch": ARCH, "depths": "1-1-1",
            "widths": "2-2-2", "params": 303_706, "macs": 43_000_000, "method": method,
            "lam": 1.0, "eps": eps, "norm": "linf", "dataset": "cifar10-jpeg", "n_train": 2000, "seed": seed}  # fmt: skip


def _sweep(s: Session, name: str, trials: list[dict[str, Any]], spec: dict[str, Any] | None = None) -> list[int]:
    sweep = create_sweep(s, name=name, spec=spec or {"name": name}, trials=trials, code_version="test")
    return [t.id for t in sweep.trials]


def _run(s: Session, tid: int, epochs: list[tuple[float, float, float]], best_test_loss: float | None = None,
         split: str = "val") -> None:
    """Completed trial with per-epoch (adv_loss_train, held-out adv loss, robust_acc) on `split` (val, or test as
    under select_on 'test'); its clean held-out loss equals the adversarial one (exact at eps 0, where R0 is read).
    `best_test_loss`: the best checkpoint's clean test loss, a decoy (R0 used to be read there, at another epoch)."""
    for e, (train, held, acc) in enumerate(epochs, start=1):
        upsert_epoch(s, trial_id=tid, report=EpochReport(epoch=e, adv_loss_train=train, robust_acc=acc, clean_acc=acc,
                                                         **{f"adv_loss_{split}": held, f"clean_loss_{split}": held}))
    if best_test_loss is not None:
        for ckpt, loss in (("best", best_test_loss), ("last", best_test_loss + 0.5)):
            upsert_final(s, trial_id=tid, row=FinalRow(checkpoint=ckpt, attack="pgd20", clean_loss_test=loss))
    mark_trial(s, trial_id=tid, status="running", actor="writer")
    mark_trial(s, trial_id=tid, status="completed", actor="writer")


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'eps.db'}")
    upgrade(engine)
    return session_factory(engine)


@pytest.fixture
def filled(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """grid: SAT at eps {0, 2, 4, 8}/255 (seed 0, R0 = 1.0 at the clean run's epoch 2) and a seed-1 group whose runs
    have not finished;
    zipped: eps 0 trained with method `clean`; finetune: PGD and FGSM fine-tuning of the grid's clean run."""
    with sessions.begin() as s:
        grid = _sweep(s, "grid", [_trial(0, "sat", 0.0), _trial(1, "sat", 2 * E), _trial(2, "sat", 4 * E),
                                  _trial(3, "sat", 8 * E), _trial(4, "sat", 0.0, seed=1), _trial(5, "sat", 4 * E, seed=1)])
        # selected epochs (smallest adv_loss_val): clean epoch 2 (0.6; R0 = its clean_loss_val 1.0, not the best
        # checkpoint's test loss 1.4), 2/255 epoch 2 (0.8), 4/255 epoch 3 (1.2)
        _run(s, grid[0], [(1.2, 1.3, 0.3), (0.6, 1.0, 0.4), (0.5, 1.1, 0.4)], best_test_loss=1.4)
        _run(s, grid[1], [(0.9, 1.5, 0.2), (0.8, 1.4, 0.3), (0.7, 1.45, 0.3)])
        _run(s, grid[2], [(1.5, 1.9, 0.2), (1.3, 1.8, 0.2), (1.2, 1.7, 0.25)])
        _run(s, grid[3], [(2.5, 2.4, 0.1), (2.0, 2.2, 0.2), (1.9, 2.3, 0.2)])
        zipped = _sweep(s, "zipped", [_trial(0, "clean", 0.0), _trial(1, "sat", 2 * E), _trial(2, "sat", 4 * E)])
        _run(s, zipped[0], [(0.6, 1.0, 0.5)], best_test_loss=1.4)
        _run(s, zipped[1], [(0.8, 1.4, 0.3)])
        _run(s, zipped[2], [(1.2, 1.7, 0.3)])
        ref = {"init_from": f"trial:{grid[0]}"}
        ft = _sweep(s, "finetune", [_trial(0, "sat", E, epochs=1, **ref), _trial(1, "sat", 2 * E, epochs=1, **ref),
                                    _trial(2, "fgsm", 2 * E, epochs=1, **ref), _trial(3, "fgsm", 4 * E, epochs=1, **ref)],
                    spec={"training": ref})
        _run(s, ft[0], [(0.7, 1.1, 0.3)])
        _run(s, ft[1], [(0.8, 1.2, 0.3)])
        _run(s, ft[2], [(0.9, 1.3, 0.30), (0.85, 1.25, 0.31)])
        _run(s, ft[3], [(1.0, 1.4, 0.30), (0.9, 1.35, 0.01)])  # collapses to 1% PGD accuracy: catastrophic
        _sweep(s, "no-clean", [_trial(0, "sat", 8 * E)])
    return {"grid": grid, "zipped": zipped, "finetune": ft}


def test_grid_groups_and_hand_computed_eps_star(sessions: sessionmaker[Session], filled: dict[str, Any]) -> None:
    with sessions() as s:
        groups = epsilon_star_for_sweep(s, sweep_ref="grid")
    assert [(g["seed"], g["method"]) for g in groups] == [(0, "sat"), (1, "sat")]
    g = groups[0]
    assert (g["clean_trial"], g["r0"], g["r0_epoch"], g["r0_split"], g["missing"]) == (
        filled["grid"][0], 1.0, 2, "val", [])  # the clean point's epoch, not the best checkpoint's (R0 there: 1.4)
    assert [(p["eps"], p["epoch"], p["adv_loss_train"]) for p in g["points"]] == [
        (0.0, 2, 0.6), (2 * E, 2, 0.8), (4 * E, 3, 1.2), (8 * E, 2, 2.0)]
    # 0.8 <= R0 = 1.0 < 1.2 between 2/255 and 4/255: eps* = 2/255 + (1.0 - 0.8) / (1.2 - 0.8) * 2/255 = 3/255
    assert g["eps_star"] == pytest.approx(3 * E)
    assert (g["bracketed"], g["lower"], g["upper"], g["reason"]) == (True, 2 * E, 4 * E, None)
    # fast, side by side: PGD fine-tuning line through (1/255, 0.7), (2/255, 0.8): 0.6 + 25.5 eps = 1.0 at 4/255
    sat, fgsm = g["fast"]
    assert (sat["method"], sat["epochs"], sat["n_points"]) == ("sat", 1, 2)
    assert sat["slope"] == pytest.approx(0.1 / E) and sat["intercept"] == pytest.approx(0.6)
    assert sat["eps_star"] == pytest.approx(4 * E) and sat["bracketed"] is False  # extrapolated beyond 2/255
    assert g["eps_star_fast"] == pytest.approx(4 * E)
    # FGSM: selected epochs 2 (0.85 at 2/255) and 2 (0.9 at 4/255): slope 0.05 / (2/255), eps* = 2/255 + 0.15/0.05 * 2/255
    assert fgsm["eps_star"] == pytest.approx(8 * E)
    assert [p["catastrophic_overfitting"] for p in fgsm["points"]] == [False, True]
    assert all(p["catastrophic_overfitting"] is None for p in g["points"] + sat["points"])  # not fgsm-trained
    # seed 1: its clean run has no results yet
    assert groups[1]["eps_star"] is None and groups[1]["missing"] == filled["grid"][4:6]
    assert "no results" in groups[1]["reason"]


def test_select_on_test_runs_select_epochs_and_r0_on_the_test_losses(sessions: sessionmaker[Session]) -> None:
    """Under select_on 'test' the per-epoch losses are the test set's (`_test`): the points and R0 are read there,
    with the same rule (smallest adversarial loss, earliest on ties)."""
    with sessions.begin() as s:
        ids = _sweep(s, "on-test", [_trial(0, "sat", 0.0), _trial(1, "sat", 2 * E), _trial(2, "sat", 4 * E)])
        _run(s, ids[0], [(0.7, 0.9, 0.5), (0.6, 0.8, 0.5), (0.5, 0.8, 0.5)], split="test")  # tie: epoch 2, R0 0.8
        _run(s, ids[1], [(0.7, 1.0, 0.3)], split="test")
        _run(s, ids[2], [(1.1, 1.5, 0.2), (0.9, 1.4, 0.2)], split="test")
    with sessions() as s:
        (g,) = epsilon_star_for_sweep(s, sweep_ref="on-test")
    assert (g["r0"], g["r0_epoch"], g["r0_split"]) == (0.8, 2, "test")
    assert [(p["epoch"], p["split"], p["adv_loss_test"], p["adv_loss_val"]) for p in g["points"]] == [
        (2, "test", 0.8, None), (1, "test", 1.0, None), (2, "test", 1.4, None)]
    # points (0, 0.6), (2/255, 0.7), (4/255, 0.9); R0 = 0.8 between 2/255 and 4/255: 2/255 + 0.1 / 0.2 * 2/255
    assert g["eps_star"] == pytest.approx(3 * E) and g["bracketed"] is True


def test_clean_method_is_the_eps0_point_of_a_zipped_grid(sessions: sessionmaker[Session], filled: dict[str, Any]) -> None:
    with sessions() as s:
        (g,) = epsilon_star_for_sweep(s, sweep_ref="zipped")
    assert (g["method"], g["clean_trial"]) == ("sat", filled["zipped"][0])  # the lone `clean` group is not listed
    assert g["eps_star"] == pytest.approx(3 * E) and g["fast"] == [] and g["eps_star_fast"] is None


def test_finetune_sweep_reports_its_clean_runs_group(sessions: sessionmaker[Session], filled: dict[str, Any]) -> None:
    with sessions() as s:
        (g,) = epsilon_star_for_sweep(s, sweep_ref="finetune")
    assert (g["sweep"], g["clean_trial"]) == ("grid", filled["grid"][0])
    assert g["eps_star"] == pytest.approx(3 * E) and g["eps_star_fast"] == pytest.approx(4 * E)


def test_bad_refs(sessions: sessionmaker[Session], filled: dict[str, Any]) -> None:
    with sessions() as s:
        with pytest.raises(SpecError) as e:
            epsilon_star_for_sweep(s, sweep_ref="no-clean")
        assert e.value.field == "eps" and "eps = 0" in e.value.reason
        with pytest.raises(NotFound):
            epsilon_star_for_sweep(s, sweep_ref=999)


@pytest.mark.parametrize(("accs", "flag"), [
    ([0.30, 0.35, 0.01], True),  # last epoch below the 2% floor
    ([0.30, 0.40, 0.05], True),  # below 0.2 x the best earlier epoch (0.08)
    ([0.30, 0.40, 0.10], False),
    ([0.01], True), ([0.25], False), ([None, 0.3, None], False), ([], None),
])  # fmt: skip
def test_catastrophic_overfitting_rule(accs: list[float | None], flag: bool | None) -> None:
    assert catastrophic_overfitting(accs) is flag


@pytest.fixture
def client(tmp_path: Path, sessions: sessionmaker[Session], filled: dict[str, Any]) -> Iterator[TestClient]:
    from testkit.api_client import api_client

    from service.settings import Settings

    with api_client(Settings(database_url=f"sqlite:///{tmp_path / 'eps.db'}", storage_path=str(tmp_path))) as c:
        yield c


def test_route(client: TestClient, filled: dict[str, Any], sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        grid_id = get_trial(s, trial_id=filled["grid"][0]).sweep_id
    r = client.get(f"/api/v1/sweeps/{grid_id}/epsilon-star")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sweep_id"] == grid_id and body["groups"][0]["eps_star"] == pytest.approx(3 * E)
    assert body["groups"][0]["fast"][1]["points"][1]["catastrophic_overfitting"] is True
    assert client.get("/api/v1/sweeps/999/epsilon-star").status_code == 404
    bad = client.get(f"/api/v1/sweeps/{grid_id + 3}/epsilon-star")  # the 'no-clean' sweep: a state, not a body error
    assert bad.status_code == 409 and bad.json()["detail"] == (
        f"sweep {grid_id + 3}: eps* needs an eps = 0 (clean) run in the grid")
    typed = client.get("/api/v1/sweeps/abc/epsilon-star")
    assert typed.status_code == 422 and typed.json()["detail"][0]["loc"] == ["path", "sweep_id"]


def test_cli(tmp_path: Path, filled: dict[str, Any]) -> None:
    from service.cli import app

    url = ["--database-url", f"sqlite:///{tmp_path / 'eps.db'}"]
    out = CliRunner().invoke(app, ["epsilon-star", "--sweep", "grid", *url])
    assert out.exit_code == 0, out.output
    assert "eps* = 3/255 (between 2/255 and 4/255)" in out.output
    assert "fast eps* (sat fine-tuning, 1 epoch(s), 2 points) = 4/255 (extrapolated)" in out.output
    js = CliRunner().invoke(app, ["epsilon-star", "--sweep", "grid", "--json", *url])
    assert json.loads(js.output)[0]["eps_star"] == pytest.approx(3 * E)
    bad = CliRunner().invoke(app, ["epsilon-star", "--sweep", "no-clean", *url])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == ["error: eps: eps* needs an eps = 0 (clean) run in the grid"]

