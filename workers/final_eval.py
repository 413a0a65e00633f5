"""The full evaluation of a trained trial on the test set, on its best and its last checkpoint, and the one
function that trains and evaluates a trial (used by the Ray trainable and by `robustgrid train` alike)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from db.contract import FinalRow, attack_key
from search_spaces.config import TrialConfig
from workers.evaluate import evaluate
from workers.metrics.lipschitz import lipschitz_ratios
from workers.trainer import Trainer, TrainState, autocast, eval_attack

log = logging.getLogger(__name__)


class _LipschitzMean:
    """Mean over examples (x' != x) of the empirical Lipschitz ratios of the logits and of each block, pooled
    across batches."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.n, self.sums = model, 0, torch.zeros(0)

    def __call__(self, x: Tensor, x_adv: Tensor) -> None:
        logits, blocks = lipschitz_ratios(self.model, x, x_adv)  # (n,), [(n,), ...]
        sums = torch.stack([r.sum() for r in (logits, *blocks)]).cpu()
        self.sums = sums if self.n == 0 else self.sums + sums
        self.n += len(logits)

    def result(self) -> tuple[float | None, list[float] | None]:
        if not self.n:
            return None, None
        means = (self.sums / self.n).tolist()
        return means[0], means[1:]


def final_evaluation(trainer: Trainer, state: TrainState) -> list[FinalRow]:
    """One row per (checkpoint, attack): clean/robust accuracy, stability, counts, test losses, and for PGD the
    empirical Lipschitz constant of the logits and of every residual block."""
    cfg, d, model = trainer.cfg, trainer.data, trainer.model
    last = {k: v.clone() for k, v in state.model.items()}
    best_epoch = state.best_epoch or state.epoch
    rows = []
    for checkpoint, weights, epoch in [("best", state.best_model or last, best_epoch), ("last", last, state.epoch)]:
        if checkpoint == "last" and best_epoch == state.epoch:
            # the best checkpoint is the last one: same weights, same seeded attack, same numbers; evaluate once
            rows += [r.model_copy(update={"checkpoint": "last", "device_seconds": 0.0}) for r in rows]
            break
        model.load_state_dict(weights)
        for name in cfg.final_attacks:
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed)  # the same random starts for every checkpoint: best and last compare fairly
            lip = _LipschitzMean(model) if name == "pgd" and cfg.eps > 0 else None
            with autocast(cfg, trainer.device):
                m = evaluate(model, d.test_x, d.test_y, attack=eval_attack(cfg, name), batch_size=cfg.eval_batch_size,
                             on_batch=lip)
            emp, blocks = lip.result() if lip is not None else (None, None)
            rows.append(FinalRow(checkpoint=checkpoint, attack=attack_key(name, cfg.eval_attack.steps), epoch=epoch,
                                 **m, emp_lipschitz=emp, emp_lipschitz_blocks=blocks,
                                 device_seconds=time.perf_counter() - t0))
    model.load_state_dict(last)
    return rows


def train_and_evaluate(
    cfg: TrialConfig,
    *,
    device: torch.device,
    data_root: str | None,
    resume: TrainState | None = None,
    on_epoch: Callable[[dict[str, Any], TrainState], None] | None = None,
) -> tuple[TrainState, list[FinalRow]]:
    """Train (or finish training) one trial, then evaluate its best and last checkpoints on the test set."""
    trainer = Trainer(cfg, device=device, data_root=data_root)
    if resume is not None:
        trainer.load(resume)
    state = trainer.fit(on_epoch=on_epoch)
    state = trainer.snapshot()
    rows = final_evaluation(trainer, state)
    log.info("trial %s done in %.1f s", cfg.arch, state.seconds)
    return state, rows


def pick_device(name: str | None = None) -> torch.device:
    """The requested device, else CUDA when available, else CPU (passed in everywhere; no module-level device)."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
