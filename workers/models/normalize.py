"""Pixel-space input handling shared by every model.

Every model of the service takes images `x` in [0, 1] pixel space and normalises them itself, so that every attack
radius is a pixel-space radius (science.md, notation). `Normalize` holds the per-channel mean and std as buffers
(saved with the weights, moved by `.to(device)`, never trained); `PixelClassifier` is the small base every model
derives from: it applies the normalisation and gives `forward` and `forward_with_blocks` from one `_logits`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """`(x - mean) / std` per channel, mean and std stored as (1, C, 1, 1) buffers.

    Args:
        mean: per-channel mean in pixel units, length `in_channels`.
        std: per-channel standard deviation in pixel units, length `in_channels`, all > 0.
        in_channels: number of image channels C.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], in_channels: int = 3) -> None:
        super().__init__()
        if len(mean) != in_channels:
            raise ValueError(f"mean must have in_channels={in_channels} entries, got {len(mean)}")
        if len(std) != in_channels:
            raise ValueError(f"std must have in_channels={in_channels} entries, got {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be > 0, got {list(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, in_channels, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, in_channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        if self.mean.is_meta:
            return f"channels={self.mean.shape[1]} (meta)"
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class PixelClassifier(nn.Module):
    """Base of every registered model: normalise inside, expose per-block outputs.

    Subclasses implement `_logits(z, blocks)` on the *normalised* batch `z`; when `blocks` is a list they append
    each block's output to it in order (the residual blocks for the ResNets; see each model's docstring). When
    `blocks` is None nothing is kept, so plain `forward` holds no extra references.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], in_channels: int) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std, in_channels)

    def _logits(self, z: Tensor, blocks: list[Tensor] | None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) in [0, 1] -> (B, num_classes)
        return self._logits(self.normalize(x), None)

    def forward_with_blocks(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits (B, num_classes) and each block's output, in forward order (for per-block Lipschitz)."""
        blocks: list[Tensor] = []
        logits = self._logits(self.normalize(x), blocks)
        return logits, blocks
