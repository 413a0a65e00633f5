"""The Ray Tune function trainable: one trial, one network.

It reports every epoch's metrics with a checkpoint (`kind = "epoch"`), resumes from `tune.get_checkpoint()`,
and ends with one report carrying the final evaluation rows (`kind = "final"`). It never writes to the
database: the driver's callback (workers.db_writer) is the single writer. The param space of a trial is
`{"trial": {"trial_id": int, "config": TrialConfig as JSON, "data_root": str | None, "known": {...}}}`; `known`
holds metrics fixed before training (params, flops), added to every report so that searchers and schedulers see
them. Every report carries `robust_acc` (validation; the best checkpoint's in the final report) and `gpu_seconds`.
A trial listed in `skip` (finished before a driver restart) reports `kind = "skipped"` and does nothing else.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from search_spaces.config import TrialConfig
from workers.final_eval import pick_device, train_and_evaluate
from workers.trainer import NonFiniteLoss, TrainState

STATE_FILE = "state.pt"
EPOCH_KEYS = ("clean_acc", "robust_acc", "stability", "clean_loss_train", "adv_loss_train", "clean_loss_test",
              "adv_loss_test", "natural_risk", "robust_reg", "local_lipschitz", "lam_t", "lr", "seconds")


def _report_epoch(metrics: dict[str, Any], state: TrainState, *, known: dict[str, Any]) -> None:
    payload = {**known, **{k: metrics.get(k) for k in EPOCH_KEYS}, "gpu_seconds": state.seconds}
    payload.update(kind="epoch", epoch=metrics["epoch"], lam_trajectory=json.dumps(metrics.get("lam_trajectory")))
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state.to_dict(), Path(tmp) / STATE_FILE)
        tune.report(payload, checkpoint=tune.Checkpoint.from_directory(tmp))


def _restore() -> TrainState | None:
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return TrainState.from_dict(torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False))


def run_trial(space: dict[str, Any], skip: frozenset[int] = frozenset()) -> None:
    """Tune entry point. A non-finite loss ends the trial as failed (reason and epoch reported), not the sweep."""
    space = space["trial"]
    known = {**dict(space.get("known") or {}), "robust_acc": None, "gpu_seconds": None}
    if int(space["trial_id"]) in skip:
        tune.report({**known, "kind": "skipped"})
        return
    cfg = TrialConfig.model_validate(space["config"])
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        state, rows = train_and_evaluate(cfg, device=pick_device(), data_root=space.get("data_root"),
                                         resume=_restore(), on_epoch=functools.partial(_report_epoch, known=known))
    except NonFiniteLoss as e:
        tune.report({**known, "kind": "failed", "error": str(e), "epoch": e.epoch})
        return
    best = state.best_robust_acc if state.best_epoch is not None else None  # validation, the best checkpoint
    tune.report({**known, "kind": "final", "final_rows": json.dumps(rows), "epoch": state.epoch, "robust_acc": best,
                 "gpu_seconds": state.seconds + sum(r["gpu_seconds"] for r in rows)})
