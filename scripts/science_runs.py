"""The real runs behind docs/science-results.md, without Ray: each trial is trained by the same function as the
Ray trainable (workers.final_eval.train_and_evaluate) and its reports go through the same DBWriter callback into a
SQLite database, so the eps* service reads them exactly as it reads a sweep run on Ray.

    .venv/bin/python scripts/science_runs.py run --phase eps      # SAT eps grid {0,1,2,4,8}/255 (eps 0 = clean)
    .venv/bin/python scripts/science_runs.py run --phase finetune # clean model fine-tuned at {1,2,4}/255
    .venv/bin/python scripts/science_runs.py run --phase eps-test # the eps grid under select_on 'test' (studies')
    .venv/bin/python scripts/science_runs.py run --phase lambda   # TRADES lambda grid {1, 6, 18}
    .venv/bin/python scripts/science_runs.py run --phase fgsm     # FGSM-RS at 16/255, 10 epochs (catastrophic overfitting?)
    .venv/bin/python scripts/science_runs.py report               # the tables of docs/science-results.md

Options: --data-root (default .data/cifar10-jpeg), --db (default .data/science.db), --storage (default
.data/science-storage: the fine-tuning runs read the clean model there, laid out as the driver lays out Ray results),
--threads (torch CPU threads, default 1).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from db.engine import make_engine, session_factory, upgrade
from db.results import query_results
from db.sweeps import get_sweep_by_name_or_id, get_trial, list_trials
from search_spaces.config import TrialConfig
from search_spaces.finetune import finetune_spec
from search_spaces.spec import SweepSpec
from service.schemas import SweepRequest
from service.settings import Settings
from service.submission import store_sweep
from workers.db_writer import DBWriter
from workers.driver import experiment_name
from workers.final_eval import train_and_evaluate
from workers.init_from import resolve_init_from
from workers.trainable import STATE_FILE, epoch_payload, final_payload
from workers.trainer import NonFiniteLoss

PX = 1 / 255  # one pixel step, [0, 1] units
COMMON: dict[str, Any] = {
    "depths": [[1], [1], [1]], "widths": [[2], [2], [2]], "dataset": "cifar10-jpeg", "n_train": [2000], "seeds": [0],
    "training": {"epochs": 3, "batch_size": 128, "lr": 0.1, "schedule": {"kind": "cosine"}, "val_size": 200,
                 "n_test": 300, "best_from": 1.0,  # best = last: one final evaluation per trial (CPU budget)
                 "train_attack": {"steps": 2, "step_size": 4 * PX}, "eval_attack": {"steps": 5, "step_size": 2 * PX}},
}  # fmt: skip
SPECS = {
    "eps": SweepSpec(name="science-eps-grid", method=["sat"], eps=[0, PX, 2 * PX, 4 * PX, 8 * PX], **COMMON),
    # The same grid under the studies' protocol (select_on 'test': the per-epoch evaluation, the epoch rule and R0 on
    # the 300 test images; no validation split).
    "eps-test": SweepSpec(name="science-eps-grid-test", method=["sat"], eps=[0, PX, 2 * PX, 4 * PX, 8 * PX], **COMMON | {
        "training": COMMON["training"] | {"val_size": 0, "select_on": "test"}}),
    "lambda": SweepSpec(name="science-trades-lambda", method=["trades"], lam=[1.0, 6.0, 18.0], eps=[8 * PX], **COMMON),
    # FGSM-RS (Wong et al.: uniform start, step 1.25 eps) at eps 16/255 for 10 epochs: the regime where catastrophic
    # overfitting is reported; validation PGD-10 at step eps/10.
    "fgsm": SweepSpec(name="science-fgsm", method=["fgsm"], eps=[16 * PX], **COMMON | {"training": COMMON["training"] | {
        "epochs": 10, "train_attack": {"name": "fgsm", "steps": 1, "step_size": 20 * PX, "start": "uniform"},
        "eval_attack": {"steps": 10, "step_size": None}}}),
    # Post-hoc evaluation (issue 11): eight tiny WRNs (widths 1-2 per stage) evaluated with the studies' PGD-20 at
    # 8/255 on 500 test images; then `robustgrid evaluate --front --attack autoattack --local` re-attacks only the
    # widened front and `posthoc-report` puts both fronts side by side.
    "posthoc": SweepSpec(name="science-posthoc", method=["sat"], eps=[8 * PX], **COMMON | {
        "widths": [[1, 2], [1, 2], [1, 2]], "training": COMMON["training"] | {
            "n_test": 500, "eval_attack": {"steps": 20, "step_size": None}}}),
}


def _resolved(cfg: TrialConfig, settings: Settings) -> TrialConfig:
    """A fine-tuning trial's `init_from = "trial:<id>"` as the state file under the storage path (as the driver
    resolves it for the trainable; the stored config keeps the reference, which eps* follows)."""
    if cfg.init_from is None or not cfg.init_from.startswith("trial:"):
        return cfg
    path = resolve_init_from(cfg.init_from, storage_path=settings.storage_path)
    return cfg.model_copy(update={"init_from": str(path)})


def run_sweep(settings: Settings, spec: SweepSpec) -> int:
    """Store the sweep as the service does, then train its trials one by one, reporting through DBWriter."""
    sessions = session_factory(make_engine(settings.database_url))
    with sessions() as s:
        sweep, _ = store_sweep(s, SweepRequest(spec=spec), settings)
        sweep_id, name = sweep.id, sweep.name
        trials = [(t.id, _resolved(TrialConfig.model_validate(t.config), settings))
                  for t in list_trials(s, sweep_id=sweep_id)]
    writer = DBWriter(settings.database_url, sweep_id)
    for tid, cfg in trials:
        trial = SimpleNamespace(config={"trial": {"trial_id": tid}}, last_result={})
        writer.on_trial_start(0, [], trial)

        base = {"device": "cpu", "node": "science_runs"}

        def report(metrics: dict[str, Any], state: Any, trial: Any = trial, base: dict = base) -> None:
            writer.on_trial_result(0, [], trial, epoch_payload(metrics, state, base))

        t0 = time.perf_counter()
        try:
            state, rows = train_and_evaluate(cfg, device=torch.device("cpu"), data_root=settings.data_root,
                                             on_epoch=report)
        except NonFiniteLoss as e:
            writer.on_trial_result(0, [], trial, {"kind": "failed", "error": str(e), "epoch": e.epoch})
            continue
        ckpt = Path(settings.storage_path) / experiment_name(sweep_id, name) / f"trial-{tid}" / "checkpoint_000000"
        ckpt.mkdir(parents=True, exist_ok=True)
        torch.save(state.to_dict(), ckpt / STATE_FILE)
        writer.on_trial_result(0, [], trial, final_payload(state, rows, base))
        print(f"trial {tid} {cfg.method} lam={cfg.lam:g} eps={cfg.eps * 255:g}/255: {time.perf_counter() - t0:.0f} s",
              flush=True)
    return sweep_id


def finetune(settings: Settings) -> int:
    with session_factory(make_engine(settings.database_url))() as s:
        grid = get_sweep_by_name_or_id(s, ref="science-eps-grid")
        assert grid is not None, "run --phase eps first"
        clean = next(t for t in list_trials(s, sweep_id=grid.id) if t.eps == 0.0)
        spec = finetune_spec(TrialConfig.model_validate(clean.config), clean_trial_id=clean.id,
                             eps=[PX, 2 * PX, 4 * PX], method="sat", epochs=1, lr=0.01)
    return run_sweep(settings, spec)


def posthoc_report(settings: Settings) -> None:
    """The science-posthoc sweep's front under PGD-20 and under AutoAttack (best checkpoints), side by side."""
    from db.front import front_trials
    from service.analysis import pareto_front

    with session_factory(make_engine(settings.database_url))() as s:
        sweep = get_sweep_by_name_or_id(s, ref="science-posthoc")
        assert sweep is not None, "run --phase posthoc first"
        n = len(list_trials(s, sweep_id=sweep.id))
        widened, _ = front_trials(s, sweep_id=sweep.id)
        rows = {(r["trial"], r["attack"]): r for r in query_results(s, filters={"sweep": sweep.id, "checkpoint": "best"})}
        fronts = {a: {r["trial"] for r in pareto_front(s, metrics=["params", "robust_acc"], maximize=None,
                                                          filters={"sweep": sweep.id, "attack": a})[1]}
                  for a in ("pgd20", "autoattack")}
    print(f"{n} trials; widened PGD-20 front (2 SE): {len(widened)} evaluated with AutoAttack, {n - len(widened)} spared")
    print("| trial | arch | params | PGD-20 | AutoAttack | on PGD-20 front | on AA front |")
    print("|---|---|---|---|---|---|---|")
    for (tid, attack), r in sorted(rows.items()):
        if attack != "pgd20":
            continue
        aa = rows.get((tid, "autoattack"))
        se = (r["robust_acc"] * (1 - r["robust_acc"]) / r["n_total"]) ** 0.5
        aa_text = "-" if aa is None else f"{aa['robust_acc']:.3f}"
        print(f"| {tid} | {r['arch']} | {r['params']:,} | {r['robust_acc']:.3f} ± {se:.3f} | {aa_text} | "
              f"{'yes' if tid in fronts['pgd20'] else ''} | {'yes' if tid in fronts['autoattack'] else ''} |")


def report(settings: Settings) -> None:
    from service.epsilon_star import epsilon_star_for_sweep

    with session_factory(make_engine(settings.database_url))() as s:
        for sweep in ("science-eps-grid", f"finetune-trial{_clean_id(s)}-sat", "science-eps-grid-test"):
            if get_sweep_by_name_or_id(s, ref=sweep) is None:
                continue
            print(f"\n## eps* of {sweep}\n" + json.dumps(epsilon_star_for_sweep(s, sweep_ref=sweep), indent=1))
        print("\n## TRADES lambda grid (test set, final = last checkpoint, PGD)")
        print("| lambda | clean acc | PGD acc | stability | n_robust / n_correct / n_stable / n_total |")
        print("|---|---|---|---|---|")
        for r in query_results(s, filters={"sweep": "science-trades-lambda", "checkpoint": "last"}, kind="final"):
            c = next(f for f in get_trial(s, trial_id=r["trial"]).final_results if f.checkpoint == "last")
            print(f"| {r['lam']:g} | {r['clean_acc']:.3f} | {r['robust_acc']:.3f} | {r['stability']:.3f} | "
                  f"{c.n_robust} / {c.n_correct} / {c.n_stable} / {c.n_total} |")
        print("\n## per-epoch validation (all sweeps)")
        for r in query_results(s, filters={"sweep": ["science-eps-grid", "science-trades-lambda"]}, kind="epoch"):
            print(f"trial {r['trial']} {r['method']} lam={r['lam']:g} eps={r['eps'] * 255:g}/255 epoch {r['epoch']}: "
                  f"adv_loss_train {r['adv_loss_train']:.3f} adv_loss_val {r['adv_loss_val']:.3f} "
                  f"clean_acc {r['clean_acc']:.3f} robust_acc {r['robust_acc']:.3f} stability {r['stability']:.3f} "
                  f"({r['device_seconds']:.0f} s epoch)")


def _clean_id(s: Any) -> int:
    grid = get_sweep_by_name_or_id(s, ref="science-eps-grid")
    return next(t.id for t in list_trials(s, sweep_id=grid.id) if t.eps == 0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "report", "posthoc-report"])
    p.add_argument("--phase", choices=["eps", "eps-test", "finetune", "lambda", "fgsm", "posthoc"])
    p.add_argument("--data-root", default=".data/cifar10-jpeg")
    p.add_argument("--db", default=".data/science.db")
    p.add_argument("--storage", default=".data/science-storage")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    settings = Settings(database_url=f"sqlite:///{Path(a.db).resolve()}", data_root=a.data_root, storage_path=a.storage)
    upgrade(make_engine(settings.database_url))
    if a.what == "report":
        report(settings)
    elif a.what == "posthoc-report":
        posthoc_report(settings)
    elif a.phase == "finetune":
        finetune(settings)
    else:
        run_sweep(settings, SPECS[a.phase])


if __name__ == "__main__":
    main()
