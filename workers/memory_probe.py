"""Activation memory of a network, counted on the meta device: the elements autograd saves for the backward pass of
one training-mode forward, per image. search_spaces.placement turns it into a GPU share."""

from __future__ import annotations

import functools

import torch

from workers.models import build_model

PROBE_BATCH = 11  # a batch size no layer has as its channel count, so saved weights are told apart by shape


@functools.lru_cache(maxsize=1024)
def act_elems_per_image(model: str, depths: tuple[int, ...], widths: tuple[float, ...], *, num_classes: int = 10,
                        channels: int = 3, image_size: int = 32) -> float:
    """Elements saved for backward per image: every saved tensor whose leading dimension is the batch (weights
    are not per image). Shapes only: nothing is allocated, ~0.1 s for a WRN-34-10."""
    with torch.device("meta"):
        net = build_model(model, depths=depths, widths=widths, num_classes=num_classes, in_channels=channels,
                          mean=(0.5,) * channels, std=(0.25,) * channels)
    net.train()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if t.dim() and t.shape[0] == PROBE_BATCH:
            total += t.numel()
        return t

    x = torch.zeros(PROBE_BATCH, channels, image_size, image_size, device="meta")  # (B, C, H, W)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x)
    return total / PROBE_BATCH
