"""The fine-tuning sweep of the eps* fast approximation (science.md, Study C): the clean model of a completed
trial, fine-tuned adversarially (PGD = method `sat`, or `fgsm`) for a short run at each of a few small eps.

Every trial of the returned spec has `init_from = "trial:<clean id>"`, which is how the eps* service links the
fine-tuning runs to their clean run (and its R0). No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from search_spaces.config import TrialConfig
from search_spaces.spec import SpecError, SweepSpec

FINETUNE_METHODS = ("sat", "fgsm")
# TrialConfig fields that the spec's axes (not `training`) carry
_AXIS_FIELDS = ("model", "depths", "widths", "method", "lam", "eps", "norm", "dataset", "n_train", "seed")


def finetune_spec(
    clean: TrialConfig,
    *,
    clean_trial_id: int,
    eps: Sequence[float],  # [0, 1] pixel units, each > 0; two or more distinct values (a line is fitted)
    method: Literal["sat", "fgsm"] = "sat",
    epochs: int = 1,  # short runs: 1 or 3 epochs
    lr: float = 0.01,  # per batch of the clean run's batch_size, constant over the fine-tuning
    name: str | None = None,
) -> SweepSpec:
    """A sweep fine-tuning `clean` (the config of trial `clean_trial_id`, trained at eps = 0) at each eps.
    Everything else (architecture, data, batch size, evaluation) is the clean run's. Raises SpecError."""
    if clean.eps != 0.0:
        raise SpecError("init_from", f"trial {clean_trial_id} is not a clean run (eps = {clean.eps:g}, not 0)")
    if method not in FINETUNE_METHODS:
        raise SpecError("method", f"fine-tuning uses one of {', '.join(FINETUNE_METHODS)}, not {method!r}")
    grid = sorted({float(e) for e in eps})
    if len(grid) < 2 or grid[0] <= 0.0:
        raise SpecError("eps", f"the fast eps* needs two or more distinct eps > 0, got {list(eps)}")
    training: dict[str, Any] = {
        k: v for k, v in clean.model_dump(mode="json").items() if k not in _AXIS_FIELDS and k != "train_attack"
    }
    if method == "sat":
        training["train_attack"] = clean.train_attack.model_dump(mode="json")  # fgsm: its reference defaults
    training.update(epochs=epochs, lr=lr, schedule={"kind": "constant"}, init_from=f"trial:{int(clean_trial_id)}")
    return SweepSpec(
        name=name or f"finetune-trial{int(clean_trial_id)}-{method}",
        description=f"eps* fast approximation: trial {clean_trial_id} fine-tuned with {method} for {epochs} epoch(s)",
        model=clean.model,
        depths=[[d] for d in clean.depths],
        widths=[[w] for w in clean.widths],
        method=[method],
        eps=grid,
        norm=[clean.norm],
        dataset=clean.dataset,
        n_train=[clean.n_train],
        seeds=[clean.seed],
        training=training,
    )
