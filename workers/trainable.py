"""The Ray Tune function trainable: one trial, one network.

It reports every epoch as a `db.contract.EpochReport` with a checkpoint (`kind = "epoch"`), resumes from
`tune.get_checkpoint()`, and ends with one report carrying the final evaluation as `db.contract.FinalRow`s
(`kind = "final"`). It never writes to the database: the driver's callback (workers.db_writer) is the single
writer. The param space of a trial is `{"trial": {"trial_id": int, "config": TrialConfig as JSON, "data_root":
str | None, "known": {...}}}`; `known` holds metrics fixed before training (params, macs), added to every report
so that searchers and schedulers see them. Every report also carries `robust_acc` (validation; the best
checkpoint's in the final report), `trial_device_seconds` (the trial's device-seconds so far) and the provenance
`device` and `node`. A trial listed in `skip` (finished before a driver restart) reports `kind = "skipped"`.

Failures: a non-finite loss ends the trial `failed` (`non_finite_loss at epoch N`), reported, so Tune does not
retry it. An out-of-memory error while training halves the training batch size (down to MIN_BATCH_SIZE) and
continues from the last epoch's state in the same process; every report names `batch_size_used`, and the
checkpoint keeps it, so a restart by Tune (its FailureConfig: a dead worker or node) continues with the same size.
Still out of memory at the floor: the trial ends `failed` (`out_of_memory ...`), not retried.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from db.contract import EpochReport, FinalRow
from search_spaces.config import TrialConfig
from workers.fault_injection import batch_hook
from workers.final_eval import final_evaluation, pick_device
from workers.trainer import NonFiniteLoss, Trainer, TrainState

STATE_FILE = "state.pt"
ATTEMPT_FILE = "attempt.json"  # beside the state: {"batch_size": the training batch size in use}
MIN_BATCH_SIZE = 8  # images: the floor of the out-of-memory halving


class OutOfMemoryAtFloor(RuntimeError):
    """Out of memory with the training batch size at MIN_BATCH_SIZE (or the config's, when smaller)."""

    def __init__(self, batch_size: int, epoch: int):
        super().__init__(f"out_of_memory at epoch {epoch} with batch size {batch_size} (floor {MIN_BATCH_SIZE})")
        self.batch_size, self.epoch = batch_size, epoch


def device_name(device: torch.device) -> str:
    """`cpu`, or the CUDA device's name (e.g. `NVIDIA H200`)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def node_name() -> str:
    """Host name and IP of the node this process runs on."""
    import ray.util

    try:
        ip = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - outside a Ray worker: the host name alone
        ip = ""
    return f"{socket.gethostname()} {ip}".strip()


def epoch_report(metrics: dict[str, Any]) -> EpochReport:
    """The trainer's epoch metrics as the contract's report (the trainer names them in the contract's words)."""
    return EpochReport.model_validate({k: v for k, v in metrics.items() if k in EpochReport.model_fields})


def epoch_payload(metrics: dict[str, Any], state: TrainState, base: dict[str, Any]) -> dict[str, Any]:
    """The Tune result of one epoch: `base` (known metrics, provenance), the EpochReport's fields, the kind."""
    return {**base, **epoch_report(metrics).model_dump(), "kind": "epoch", "trial_device_seconds": state.seconds}


def final_payload(state: TrainState, rows: list[FinalRow], base: dict[str, Any]) -> dict[str, Any]:
    """The Tune result that ends a trial: its FinalRows, the best validation robust accuracy, the total time."""
    best = state.best_robust_acc if state.best_epoch is not None else None  # validation, the best checkpoint
    total = state.seconds + sum(r.device_seconds or 0.0 for r in rows)
    return {**base, "kind": "final", "final_rows": [r.model_dump() for r in rows], "epoch": state.epoch,
            "robust_acc": best, "trial_device_seconds": total}


def _report_epoch(metrics: dict[str, Any], state: TrainState, *, base: dict[str, Any]) -> None:
    payload = epoch_payload(metrics, state, base)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state.to_dict(), Path(tmp) / STATE_FILE)
        (Path(tmp) / ATTEMPT_FILE).write_text(json.dumps({"batch_size": base["batch_size_used"]}))
        tune.report(payload, checkpoint=tune.Checkpoint.from_directory(tmp))


def _restore() -> tuple[TrainState | None, int | None]:
    """The last checkpoint's state and the training batch size it ran with (None, None: a fresh start)."""
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None, None
    with ckpt.as_directory() as d:
        state = TrainState.from_dict(torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False))
        attempt = Path(d) / ATTEMPT_FILE
        return state, (json.loads(attempt.read_text())["batch_size"] if attempt.exists() else None)


def fit_with_oom_retry(cfg: TrialConfig, *, device: torch.device, data_root: str | None,
                       resume: TrainState | None, base: dict[str, Any], inject: dict[str, Any] | None = None
                       ) -> tuple[TrainState, list[FinalRow]]:
    """Train (from `resume`) and evaluate. An out-of-memory error while training halves the training batch size
    (`base["batch_size_used"]`, which every report carries) and continues from the last reported epoch; raises
    OutOfMemoryAtFloor when the batch size cannot be halved above MIN_BATCH_SIZE."""
    last = resume

    def on_epoch(metrics: dict[str, Any], state: TrainState) -> None:
        nonlocal last
        _report_epoch(metrics, state, base=base)
        last = TrainState(**state.to_dict())  # snapshot() rebinds its tensors each epoch: a shallow copy holds

    while True:
        size = int(base["batch_size_used"])
        trainer = Trainer(cfg.model_copy(update={"batch_size": size}), device=device, data_root=data_root)
        trainer.batch_hook = batch_hook(inject)
        if last is not None:
            trainer.load(TrainState(**last.to_dict()))  # the trainer advances its state in place
        try:
            trainer.fit(on_epoch=on_epoch)
            break
        except torch.OutOfMemoryError:
            epoch = trainer.state.epoch + 1
            del trainer
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if size // 2 < MIN_BATCH_SIZE:
                raise OutOfMemoryAtFloor(size, epoch) from None
            base["batch_size_used"] = size // 2
    state = trainer.snapshot()
    return state, final_evaluation(trainer, state)


def run_trial(space: dict[str, Any], skip: frozenset[int] = frozenset()) -> None:
    """Tune entry point. A non-finite loss ends the trial as failed (reason and epoch reported), not the sweep."""
    space = space["trial"]
    known = {**dict(space.get("known") or {}), "robust_acc": None, "trial_device_seconds": None}
    if int(space["trial_id"]) in skip:
        tune.report({**known, "kind": "skipped"})
        return
    cfg = TrialConfig.model_validate(space["config"])
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    device = pick_device()
    resume, batch_size = _restore()
    base = {**known, "device": device_name(device), "node": node_name(),
            "batch_size_used": batch_size or cfg.batch_size}
    try:
        state, rows = fit_with_oom_retry(cfg, device=device, data_root=space.get("data_root"), resume=resume,
                                         base=base, inject=space.get("inject"))
    except (NonFiniteLoss, OutOfMemoryAtFloor) as e:  # ends failed, reported: Tune does not retry it
        tune.report({**base, "kind": "failed", "error": str(e), "epoch": e.epoch})
        return
    tune.report(final_payload(state, rows, base))
