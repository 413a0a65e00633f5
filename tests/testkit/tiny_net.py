"""A tiny residual classifier for attack and method tests: fast on CPU, with BN and one block."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class TinyNet(nn.Module):
    """conv stem -> one pre-activation residual block (with BN) -> linear head; (B, 3, 8, 8) -> (B, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8 * 8 * 8, 10)

    def forward_with_blocks(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        h = self.stem(x)  # (B, 8, 8, 8)
        b = h + self.conv(F.relu(self.bn(h)))
        return self.head(F.relu(b).flatten(1)), [b]

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_blocks(x)[0]
