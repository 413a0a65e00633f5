"""Post-hoc evaluation: re-attack the stored best or last checkpoint of finished trials with another attack
(AutoAttack, APGD-CE, PGD-100, CW-20, ...) and append one `db.contract.FinalRow` per (trial, checkpoint, attack).

Where the weights are: the trainable saves `state.pt` (a TrainState dict: `model` = last, `best_model`) in Tune's
checkpoint directories, found with workers.init_from (`trial:<id>` under the run's storage path).

Resumable: the test set is attacked in fixed batches, each seeded by (trial seed, batch index), and after every
batch the counts so far and the next batch index are written (atomically) to a small JSON file next to the state
file, `posthoc-<checkpoint>-<attack>.json`. A run that stops (killed job, lost node) continues at the first batch
not done and ends with exactly the numbers of an uninterrupted run. A finished file is kept: a task whose row was
lost before it reached the database returns at once on the next run. The row in the database is the record; a
(trial, checkpoint, attack) that has its row is skipped unless `force`.

As a Ray job (`python -m workers.posthoc SWEEP_ID --context FILE --trials 1,2 --attack autoattack`, submitted by
service.launcher.submit_evaluation_job) the driver submits one `@ray.remote` task per (trial, checkpoint), named
by trial and arch, and is the single writer of the rows (db.results.upsert_final) as the tasks finish. The same
work runs in-process without Ray (`run_local`: `robustgrid evaluate --local`, the tests). The `standard` eval preset
ends its sweep with `evaluate_front_after_sweep` (called by the sweep driver once the sweep completed): AutoAttack
on the widened Pareto front of the best checkpoints (db.front).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.contract import DEFAULT_ATTACK, FinalRow, check_attack_key
from db.engine import make_engine, session_factory
from db.front import front_trials
from db.models import FinalResult, Trial
from db.results import upsert_final
from search_spaces.config import FRONT_ATTACK, FRONT_EVAL_PRESETS, TrialConfig, check_posthoc_attack
from search_spaces.run_context import RunContext
from workers.attacks import make_attack
from workers.evaluate import Attack, evaluate
from workers.final_eval import pick_device
from workers.init_from import load_checkpoint_weights, resolve_init_from
from workers.trainer import Trainer, autocast, eval_attack

log = logging.getLogger(__name__)

# single AutoAttack components: key -> pyautoattack names (fab: FAB-T, as in the standard version)
COMPONENTS = {"apgd-ce": ("apgd-ce",), "apgd-t": ("apgd-t",), "fab": ("fab-t",), "square": ("square",)}
PROGRESS_VERSION = 1


# ------------------------------------------------------------------------------------------------- attacks


def posthoc_attack(cfg: TrialConfig, key: str) -> Attack | None:
    """The attack a canonical key names, at the trial's own eps and norm, through the attack registry: pgd<N> and
    cw<N> take the trial's evaluation step rule with N steps (eps/10 L-inf, 2.5 eps / N L2) and CW's kappa;
    fgsm the classic step; autoattack the standard version; apgd-ce / apgd-t one AutoAttack component.
    None when eps = 0 (clean only)."""
    key = check_posthoc_attack(check_attack_key(key))
    if key in COMPONENTS:
        return None if cfg.eps == 0 else make_attack("autoattack", eps=cfg.eps, norm=cfg.norm, attacks=COMPONENTS[key])
    name = key.rstrip("0123456789")
    steps = int(key[len(name):] or cfg.eval_attack.steps)
    return eval_attack(cfg.model_copy(update={"eval_attack": cfg.eval_attack.model_copy(update={"steps": steps})}),
                       name)


# ------------------------------------------------------------------------------------------------ progress


def progress_path(state_file: str | Path, checkpoint: str, key: str) -> Path:
    """The progress file of one (checkpoint, attack) evaluation, next to the state file."""
    return Path(state_file).parent / f"posthoc-{checkpoint}-{key}.json"


@dataclass
class Progress:
    """Counts of the batches done so far. `fingerprint` ties them to one evaluation (attack, weights epoch, test
    size, batch size, seed): a file written for another one is ignored."""

    fingerprint: dict[str, Any]
    next_batch: int = 0
    n_total: int = 0
    n_correct: int = 0
    n_robust: int = 0
    n_stable: int = 0
    clean_loss_sum: float = 0.0
    adv_loss_sum: float = 0.0
    seconds: float = 0.0
    done: bool = False

    @classmethod
    def load(cls, path: Path, fingerprint: dict[str, Any]) -> Progress:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(fingerprint)
        if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
            log.info("progress file %s is for another evaluation: starting over", path)
            return cls(fingerprint)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def save(self, path: Path) -> None:
        """Write atomically (a temporary file, then a rename): an interruption leaves the old or the new file."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__))
        os.replace(tmp, path)

    def add(self, m: dict[str, Any]) -> None:
        n = int(m["n_total"])
        self.n_total += n
        self.n_correct += int(m["n_correct"])
        self.n_robust += int(m["n_robust"])
        self.n_stable += int(m["n_stable"])
        self.clean_loss_sum += float(m["clean_loss_test"]) * n
        self.adv_loss_sum += float(m["adv_loss_test"]) * n

    def row(self, checkpoint: str, key: str, epoch: int) -> FinalRow:
        n = max(self.n_total, 1)
        return FinalRow(checkpoint=checkpoint, attack=key, epoch=epoch, n_total=self.n_total,
                        n_correct=self.n_correct, n_robust=self.n_robust, n_stable=self.n_stable,
                        clean_acc=self.n_correct / n, robust_acc=self.n_robust / n, stability=self.n_stable / n,
                        clean_loss_test=self.clean_loss_sum / n, adv_loss_test=self.adv_loss_sum / n,
                        device_seconds=self.seconds)


# ---------------------------------------------------------------------------------------------- evaluation


def evaluate_checkpoint(
    cfg: TrialConfig,
    *,
    state_file: str | Path,
    checkpoint: str,
    attack: str,
    device: torch.device,
    data_root: str | None,
    batch_size: int | None = None,
    after_batch: Callable[[int, Progress], None] | None = None,
) -> FinalRow:
    """Attack the test set of `cfg` (its n_test) on the `checkpoint` weights of `state_file` with the attack key
    `attack`, resuming from the progress file next to it. Batch b is attacked with torch seeded to cfg.seed + b,
    through workers.evaluate.evaluate (robust = correct AND stable). `after_batch(b, progress)` is called once
    batch b is saved (the tests interrupt there)."""
    key = check_attack_key(attack)
    weights, epoch = load_checkpoint_weights(state_file, checkpoint=checkpoint)
    trainer = Trainer(cfg.model_copy(update={"init_from": None}), device=device, data_root=data_root)
    model, x_all, y_all = trainer.model, trainer.data.test_x, trainer.data.test_y  # uint8 (N, C, H, W), (N,)
    model.load_state_dict(weights)
    model.to(memory_format=torch.channels_last)  # the layout the trainer trains and evaluates in (faster on CPU and
    # CUDA): the same numbers as the final evaluation at the end of training
    bs = batch_size or cfg.eval_batch_size
    fingerprint = {"version": PROGRESS_VERSION, "attack": key, "checkpoint": checkpoint, "epoch": epoch,
                   "n_test": len(y_all), "batch_size": bs, "seed": cfg.seed, "eps": cfg.eps, "norm": cfg.norm}
    path = progress_path(state_file, checkpoint, key)
    progress = Progress.load(path, fingerprint)
    atk = posthoc_attack(cfg, key)
    n_batches = (len(y_all) + bs - 1) // bs
    for b in range(progress.next_batch, n_batches):
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed + b)  # per batch: a resumed run draws the same starts as an uninterrupted one
        with autocast(cfg, device):
            m = evaluate(model, x_all[b * bs:(b + 1) * bs], y_all[b * bs:(b + 1) * bs], attack=atk, batch_size=bs)
        progress.add(m)
        progress.next_batch, progress.seconds = b + 1, progress.seconds + time.perf_counter() - t0
        progress.done = progress.next_batch == n_batches
        progress.save(path)
        if after_batch is not None:
            after_batch(b, progress)
    if not progress.done:  # nothing left to run (an empty test set): mark it so
        progress.done = True
        progress.save(path)
    return progress.row(checkpoint, key, epoch)


def _evaluate_task(config: dict[str, Any], state_file: str, checkpoint: str, attack: str,
                   data_root: str | None) -> dict[str, Any]:
    """One (trial, checkpoint) on a Ray worker: the FinalRow as a dict (the driver writes it)."""
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    row = evaluate_checkpoint(TrialConfig.model_validate(config), state_file=state_file, checkpoint=checkpoint,
                              attack=attack, device=pick_device(), data_root=data_root)
    return row.model_dump()


# ----------------------------------------------------------------------------------------------- the work


@dataclass(frozen=True)
class Work:
    trial_id: int
    arch: str
    config: dict[str, Any]
    state_file: str
    checkpoint: str
    attack: str

    @property
    def name(self) -> str:
        """The Ray task's name: trial, arch, checkpoint, attack."""
        return f"posthoc trial-{self.trial_id} {self.arch} {self.checkpoint} {self.attack}"


def plan_work(session: Session, *, trial_ids: Sequence[int], attack: str, checkpoints: Sequence[str],
              storage_path: str, force: bool = False) -> tuple[list[Work], list[str]]:
    """(the (trial, checkpoint) evaluations to run, notes on those skipped): a pair whose row exists is skipped
    unless `force`, a trial without a stored checkpoint is skipped with a note."""
    key = check_posthoc_attack(check_attack_key(attack))
    trials = session.scalars(select(Trial).where(Trial.id.in_(list(trial_ids))).order_by(Trial.id)).all()
    done = set(session.execute(select(FinalResult.trial_id, FinalResult.checkpoint)
                               .where(FinalResult.trial_id.in_(list(trial_ids)), FinalResult.attack == key)).all())
    work, notes = [], []
    for t in trials:
        try:
            state_file = str(resolve_init_from(f"trial:{t.id}", storage_path=storage_path))
        except (FileNotFoundError, ValueError) as e:
            notes.append(f"trial {t.id}: no checkpoint to evaluate ({e})")
            continue
        for c in checkpoints:
            if (t.id, c) in done and not force:
                notes.append(f"trial {t.id} {c}: has its {key} row")
                continue
            if force:
                progress_path(state_file, c, key).unlink(missing_ok=True)
            work.append(Work(t.id, t.arch, dict(t.config), state_file, c, key))
    return work, notes


def _store(make_session: sessionmaker[Session], w: Work, row: FinalRow) -> None:
    with make_session.begin() as s:
        upsert_final(s, trial_id=w.trial_id, row=row)


def run_local(make_session: sessionmaker[Session], work: Sequence[Work], *, data_root: str | None,
              device: torch.device | None = None) -> list[FinalRow]:
    """Run the work in this process, one evaluation after another, writing each row as it finishes."""
    rows = []
    for w in work:
        row = evaluate_checkpoint(TrialConfig.model_validate(w.config), state_file=w.state_file,
                                  checkpoint=w.checkpoint, attack=w.attack, device=device or pick_device(),
                                  data_root=data_root)
        _store(make_session, w, row)
        rows.append(row)
    return rows


def run_ray(make_session: sessionmaker[Session], work: Sequence[Work], *, data_root: str | None) -> int:
    """One Ray task per evaluation (a GPU each when the cluster has GPUs), rows written as tasks finish; the
    number of failed tasks (each logged; its progress file keeps what it did)."""
    import ray

    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(_evaluate_task)
    pending = {task.options(name=w.name, num_cpus=1, num_gpus=gpus).remote(w.config, w.state_file, w.checkpoint,
                                                                           w.attack, data_root): w for w in work}
    failed = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        w = pending.pop(ready[0])
        try:
            _store(make_session, w, FinalRow.model_validate(ray.get(ready[0])))
            log.info("%s: stored", w.name)
        except Exception:  # noqa: BLE001 - one failed evaluation does not stop the others
            log.exception("%s failed", w.name)
            failed += 1
    return failed


def evaluate_front_after_sweep(sweep_id: int, context: RunContext, *, preset: str) -> int:
    """The `standard` preset's end of sweep: AutoAttack on the best checkpoints of the widened Pareto front of
    params vs PGD-20 robust accuracy. Nothing for other presets. Returns the number of failed evaluations."""
    if preset not in FRONT_EVAL_PRESETS:
        return 0
    make_session = session_factory(make_engine(context.database_url))
    with make_session() as s:
        trials, n = front_trials(s, sweep_id=sweep_id, attack=DEFAULT_ATTACK)
        work, notes = plan_work(s, trial_ids=trials, attack=FRONT_ATTACK, checkpoints=("best",),
                                storage_path=context.storage_path)
    log.info("sweep %d (eval %s): %s on %d of %d trials; %s", sweep_id, preset, FRONT_ATTACK, len(trials), n,
             "; ".join(notes) or "nothing skipped")
    return run_ray(make_session, work, data_root=context.data_root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.posthoc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_id", type=int)
    parser.add_argument("--context", required=True, help="the run context JSON the launcher wrote")
    parser.add_argument("--trials", required=True, help="comma-separated trial ids (service.evaluation chose them)")
    parser.add_argument("--attack", required=True, help="an attack key: autoattack, apgd-ce, pgd100, cw20, ...")
    parser.add_argument("--checkpoints", default="best,last")
    parser.add_argument("--force", action="store_true", help="re-run evaluations whose row exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import ray

    context = RunContext.read(args.context)
    if not ray.is_initialized():
        ray.init(address="auto", log_to_driver=False)
    make_session = session_factory(make_engine(context.database_url))
    with make_session() as s:
        work, notes = plan_work(s, trial_ids=[int(t) for t in args.trials.split(",") if t],
                                attack=args.attack, checkpoints=args.checkpoints.split(","),
                                storage_path=context.storage_path, force=args.force)
    for note in notes:
        log.info("skipped: %s", note)
    failed = run_ray(make_session, work, data_root=context.data_root)
    log.info("sweep %d: %d evaluations, %d failed", args.sweep_id, len(work), failed)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
