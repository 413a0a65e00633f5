"""Clean accuracy, robust accuracy and perturbation stability of a model under one attack.

Robust means correct AND stable (AutoAttack's and RobustBench's convention): an example counts as robust only when
it is classified correctly clean and after the attack, so an attack that turns a wrong prediction into a right one
never adds robustness, and n_robust = |correct AND stable| exactly. Counts are kept as integers so the identity
can be checked on stored rows (n_robust <= min(n_correct, n_stable), n_robust >= n_correct + n_stable - n_total).

The attack runs in the caller's precision (bf16 autocast on CUDA); the predictions and losses that make the counts
are measured in fp32, autocast off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Attack = Callable[..., Tensor]


@dataclass
class EvalCounts:
    n_total: int = 0
    n_correct: int = 0  # argmax f(x) == y
    n_robust: int = 0  # argmax f(x) == y and argmax f(x') == y (correct AND stable)
    n_stable: int = 0  # argmax f(x') == argmax f(x)
    clean_loss_sum: float = 0.0
    adv_loss_sum: float = 0.0

    def metrics(self) -> dict[str, float | int]:
        n = max(self.n_total, 1)
        return {
            "clean_acc": self.n_correct / n,
            "robust_acc": self.n_robust / n,
            "stability": self.n_stable / n,
            "clean_loss_test": self.clean_loss_sum / n,
            "adv_loss_test": self.adv_loss_sum / n,
            "n_total": self.n_total,
            "n_correct": self.n_correct,
            "n_robust": self.n_robust,
            "n_stable": self.n_stable,
        }


def to_float(x_u8: Tensor, memory_format: torch.memory_format = torch.contiguous_format) -> Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1], contiguous in the layout the model expects."""
    return x_u8.float().div_(255.0).contiguous(memory_format=memory_format)


def fp32(x: Tensor) -> torch.autocast:
    """Autocast off on x's device: metrics run in fp32 even inside a bf16 training or attack context."""
    return torch.autocast(x.device.type, enabled=False)


def layout_of(model: nn.Module) -> torch.memory_format:
    """channels_last when the model's conv weights are (the trainer's layout on CUDA), else contiguous."""
    w = next((p for p in model.parameters() if p.dim() == 4), None)
    if w is not None and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def evaluate(
    model: nn.Module,
    x_u8: Tensor,
    y: Tensor,
    *,
    attack: Attack | None,
    batch_size: int,
    on_batch: Callable[[Tensor, Tensor], None] | None = None,
) -> dict[str, float | int]:
    """Evaluate in eval mode (the caller's mode is restored). `attack(model, x, y) -> x_adv` under the caller's
    autocast; None: clean only (robust = clean). The logits are computed in fp32 (autocast off).
    `on_batch(x, x_adv)` sees every batch (for extra metrics such as the Lipschitz estimate)."""
    was_training = model.training
    model.eval()
    fmt = layout_of(model)
    # device-side sums (correct, robust, stable, clean loss, adv loss), read once at the end: no host sync per batch
    sums = torch.zeros(5, dtype=torch.float64, device=x_u8.device)
    try:
        for i in range(0, len(y), batch_size):
            x, t = to_float(x_u8[i : i + batch_size], fmt), y[i : i + batch_size]
            with torch.no_grad(), fp32(x):
                logits = model(x).float()  # (B, K)
            x_adv = attack(model, x, t) if attack is not None else x
            with torch.no_grad(), fp32(x):
                adv_logits = logits if attack is None else model(x_adv.float()).float()
                pred, adv_pred = logits.argmax(1), adv_logits.argmax(1)
                correct = pred == t
                sums += torch.stack([correct.sum(), (correct & (adv_pred == t)).sum(), (adv_pred == pred).sum(),
                                     F.cross_entropy(logits, t, reduction="sum"),
                                     F.cross_entropy(adv_logits, t, reduction="sum")]).double()
            if on_batch is not None:
                on_batch(x, x_adv)
    finally:
        model.train(was_training)
    s = sums.tolist()
    c = EvalCounts(n_total=len(y), n_correct=round(s[0]), n_robust=round(s[1]), n_stable=round(s[2]),
                   clean_loss_sum=s[3], adv_loss_sum=s[4])
    return c.metrics()
