"""Initial weights of a fine-tuning trial (`TrialConfig.init_from`, used by the eps* fast approximation).

`init_from` is one of:
- `trial:<id>`: the last checkpoint of trial <id> under the run's Ray storage path (passed in: the driver resolves
  it with its run context's storage path): the one directory `<storage>/<experiment>/trial-<id>/` it created;
- a checkpoint directory holding `state.pt`, or a trial directory holding `checkpoint_*/state.pt` (the latest);
- a state file: a `TrainState` dict as the trainable saves it (its `model`, the last weights) or a bare state_dict.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

STATE_FILE = "state.pt"  # as workers.trainable writes it in every checkpoint


def resolve_init_from(ref: str, *, storage_path: str | None = None) -> Path:
    """The state file `ref` names; a `trial:<id>` reference needs the run's `storage_path`. Raises
    FileNotFoundError / ValueError naming `init_from`."""
    if ref.startswith("trial:"):
        if not storage_path:
            raise ValueError(f"init_from: {ref!r} names a trial of this service: it needs the run's storage path "
                             f"(the driver resolves it; elsewhere give the checkpoint's path)")
        storage = Path(storage_path)
        found = sorted(storage.glob(f"*/trial-{int(ref.removeprefix('trial:'))}"))
        if not found:
            raise FileNotFoundError(f"init_from: no trial directory for {ref!r} under {storage}")
        if len(found) > 1:
            raise ValueError(f"init_from: {ref!r} is ambiguous under {storage} ({len(found)} experiments); give a path")
        return resolve_init_from(str(found[0]))
    path = Path(ref).expanduser()
    if path.is_dir():
        if (path / STATE_FILE).is_file():
            return path / STATE_FILE
        ckpts = sorted(path.glob(f"checkpoint_*/{STATE_FILE}"))
        if not ckpts:
            raise FileNotFoundError(f"init_from: no {STATE_FILE} in {path} or its checkpoint_* directories")
        return ckpts[-1]  # checkpoint_000007 sorts after checkpoint_000006
    if not path.is_file():
        raise FileNotFoundError(f"init_from: {ref!r} does not exist")
    return path


def load_init_weights(ref: str, *, storage_path: str | None = None) -> dict[str, Tensor]:
    """The model state_dict `ref` names, on the CPU (tensors only: loaded with weights_only=True)."""
    obj = torch.load(resolve_init_from(ref, storage_path=storage_path), map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # a TrainState dict: its last weights
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"init_from: {ref!r} holds neither a TrainState nor a model state_dict")
    return obj


def load_checkpoint_weights(path: str | Path, *, checkpoint: str) -> tuple[dict[str, Tensor], int]:
    """(model state_dict on the CPU, its epoch) of a trainable's state file: `checkpoint` 'last' is its `model` at
    `epoch`, 'best' its `best_model` at `best_epoch` (the last weights when no best was kept: select_on 'last', or
    best == last). Raises ValueError naming `checkpoint` for anything but a TrainState dict."""
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint: expected 'best' or 'last', got {checkpoint!r}")
    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise ValueError(f"checkpoint: {str(path)!r} is not a TrainState file (no 'model' weights)")
    epoch = int(obj.get("epoch") or 0)
    if checkpoint == "last":
        return obj["model"], epoch
    best = obj.get("best_model")  # as workers.final_eval reads it: best_model or the last weights
    return (best if isinstance(best, dict) and best else obj["model"]), int(obj.get("best_epoch") or epoch)
