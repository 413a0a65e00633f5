"""Parameter and FLOP counts, the x-axes of Study A's Pareto fronts (science.md section 1).

- parameters: trainable parameters only (conv weights and biases, BN affine weight and bias, linear weight and
  bias); BN running statistics and the normalisation mean/std are buffers and are not counted.
- MACs: multiply-accumulates of one forward pass, counted by forward hooks on every `nn.Conv2d` and
  `nn.Linear` that actually runs (BN, ReLU, pooling, additions and concatenations are not counted; modules that
  exist but are never called, such as TRADES' `sub_block1`, add nothing). A conv contributes
  out.numel() * (in_channels / groups) * kh * kw, a linear out.numel() * in_features.
- BN layers are bypassed during the counting pass (shape-preserving, uncounted, slow on meta).
- `model_counts` builds on `torch.device("meta")`: shapes only, no weights allocated, so counting the 125-network
  depth grid at w10 takes seconds.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from workers.models.registry import build_model


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Multiply-accumulates of one forward pass on a zero batch of `input_shape` (B, C, H, W).

    The count is for the whole batch (B = 1 gives per-image MACs). The model runs in eval mode under no_grad on
    the device of its parameters (meta works) and every module's train/eval mode is restored afterwards.
    """
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    total = 0

    def conv_hook(m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Conv2d)
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Linear)
        total += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    modes = {m: m.training for m in model.modules()}
    # BN is shape-preserving and not counted: bypass it while counting (on meta its shape function is ~1 ms/call,
    # most of the time of a forward pass); the instance attribute is deleted again below.
    bypassed = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bypassed:
        m.forward = _identity  # type: ignore[method-assign]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        for m in bypassed:
            del m.forward
        for m, mode in modes.items():
            m.training = mode
    return total


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def model_counts(
    name: str,
    *,
    depths: tuple[int, ...],
    widths: tuple[float, ...],
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    **options: Any,
) -> tuple[int, int]:
    """(parameters, MACs of one input_size x input_size image) of a registered model, built on the meta device."""
    with torch.device("meta"):
        model = build_model(
            name,
            depths=depths,
            widths=widths,
            num_classes=num_classes,
            mean=(0.0,) * in_channels,
            std=(1.0,) * in_channels,
            in_channels=in_channels,
            **options,
        )
    return count_params(model), count_macs(model, (1, in_channels, input_size, input_size))
