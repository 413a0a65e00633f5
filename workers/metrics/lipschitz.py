"""Empirical Lipschitz constant of the logits and of each residual block's output (science.md, Study A)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def lipschitz_ratios(model: nn.Module, x: Tensor, x_adv: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Per-example ||g(x) - g(x')||_1 / ||x - x'||_inf for g = the logits and g = each block output of
    `model.forward_with_blocks`, over the examples with x != x' only: (n,), [(n,), ...] fp32, n <= B.

    Eval mode (the caller's mode is restored), no gradient, fp32 with autocast off even inside a bf16 autocast
    context (bf16 shifts the ratios by tens of percent at 1/255); x and x' go through one forward together.
    """
    dist = (x.float() - x_adv.float()).flatten(1).abs().amax(1)  # (B,)
    keep = dist > 0
    was_training = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            logits, blocks = model.forward_with_blocks(torch.cat([x[keep], x_adv[keep]]).float())
    finally:
        for m, training in was_training:
            m.training = training
    d = dist[keep].float()
    n = int(keep.sum())

    def ratio(out: Tensor) -> Tensor:  # (2n, ...) -> (n,)
        out = out.float().flatten(1)
        return (out[:n] - out[n:]).abs().sum(1) / d

    return ratio(logits), [ratio(b) for b in blocks]


def empirical_lipschitz(model: nn.Module, x: Tensor, x_adv: Tensor) -> tuple[float, list[float]]:
    """Mean over examples of ||f(x) - f(x')||_1 / ||x - x'||_inf for the logits, and the same for each residual
    block's output: (logits value, [one value per block]). x, x_adv (B, C, H, W); examples with x' == x are
    skipped; when every example is skipped all values are NaN (undefined)."""
    logits, blocks = lipschitz_ratios(model, x, x_adv)
    if logits.numel() == 0:
        return float("nan"), [float("nan")] * len(blocks)
    return float(logits.mean()), [float(b.mean()) for b in blocks]
