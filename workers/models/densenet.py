"""DenseNet-BC for 32x32 inputs (Study C; growth rate k is its width).

Huang, Liu, van der Maaten & Weinberger, "Densely Connected Convolutional Networks", CVPR 2017 (arXiv:1608.06993),
CIFAR variant with bottlenecks and compression ("BC"), as in the authors' code (github.com/liuzhuang13/DenseNet)
and its PyTorch port (github.com/andreasveit/densenet-pytorch `densenet.py`, `DenseNet3(bottleneck=True,
reduction=0.5)`):

    stem        3x3 conv in_channels -> 2k, no bias                                      # (B, 2k, 32, 32)
    dense i     n_i bottleneck layers: BN-ReLU-conv1x1 (c -> 4k) - BN-ReLU-conv3x3 (4k -> k), concat [x, new]
    transition  between dense blocks: BN-ReLU-conv1x1 (c -> floor(0.5 c)) - avgpool 2x2     # halves H, W
    head        BN -> ReLU -> global average pool -> linear with bias                     # (B, num_classes)

`depths=(n, n, n)` dense layers per block; depth L = 3 * 2n + 4 (each bottleneck layer has two convs; plus the stem,
two transitions and the classifier), so DenseNet-BC-40 is depths=(6, 6, 6) and DenseNet-BC-100 is (16, 16, 16).
`widths=(k,)` is the growth rate (k=12 in the paper); a per-block tuple (k1, k2, k3) is also accepted (so that a
TrialConfig with equal-length depths and widths works, and for "reduce the last stage" variants); the stem has
2 * k1 channels. Fractional k is rounded half up. A block depth of 0 removes that block and its transition.

Parameter counts (reference formula, 10 classes): BC-40 k=12: 176,122; BC-100 k=12: 769,162 (the paper's 0.8M).
Init as the reference: conv N(0, sqrt(2 / (k*k*out))), BN weight 1 / bias 0, linear bias 0. Dropout (default
off; the paper uses 0.2 only without augmentation) follows each conv of a bottleneck layer and of a transition.
`forward_with_blocks` returns each bottleneck layer's (concatenated) output, sum(depths) tensors: a dense layer
x -> [x, H(x)] is the skip-connected block of this family.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.models.normalize import PixelClassifier
from workers.models.registry import check_length, register_model, scale_channels
from workers.models.wrn import init_wrn_

COMPRESSION = 0.5  # transition keeps floor(0.5 * c) channels
BOTTLENECK = 4  # the 1x1 conv outputs 4k channels


class Bottleneck(nn.Module):
    """BN-ReLU-conv1x1 (in -> 4k) - BN-ReLU-conv3x3 (4k -> k), output concat [x, new]: (B, in + k, H, W)."""

    def __init__(self, in_ch: int, growth: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, BOTTLENECK * growth, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(BOTTLENECK * growth)
        self.conv2 = nn.Conv2d(BOTTLENECK * growth, growth, kernel_size=3, padding=1, bias=False)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:  # (B, in, H, W) -> (B, in + k, H, W)
        out = self.conv1(F.relu(self.bn1(x)))  # (B, 4k, H, W)
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(F.relu(self.bn2(out)))  # (B, k, H, W)
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return torch.cat([x, out], dim=1)


class Transition(nn.Module):
    """BN-ReLU-conv1x1 (in -> out) - avgpool 2x2: (B, in, H, W) -> (B, out, H/2, W/2)."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(F.relu(self.bn(x)))  # (B, out, H, W)
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return F.avg_pool2d(out, 2)  # (B, out, H/2, W/2)


class DenseNetBC(PixelClassifier):
    """DenseNet-BC body: stem, dense blocks with transitions between them, BN-ReLU-pool-linear head.

    Args:
        depths: bottleneck layers per dense block; 0 removes the block (and its transition).
        growths: growth rate per dense block (integers).
        num_classes, mean, std, in_channels, dropout: see `workers.models.build_model`.
    """

    def __init__(
        self,
        *,
        depths: tuple[int, ...],
        growths: tuple[int, ...],
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(mean, std, in_channels)
        c = 2 * growths[0]
        self.conv1 = nn.Conv2d(in_channels, c, kernel_size=3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for depth, k in ((d, k) for d, k in zip(depths, growths, strict=True) if d > 0):
            if stages:  # a transition between two remaining dense blocks
                out = int(math.floor(c * COMPRESSION))
                stages.append(Transition(c, out, dropout))
                c = out
            layers = []
            for _ in range(depth):
                layers.append(Bottleneck(c, k, dropout))
                c += k
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)
        self.num_features = c
        init_wrn_(self)

    def _logits(self, z: Tensor, blocks: list[Tensor] | None) -> Tensor:
        out = self.conv1(z)  # (B, 2k, H, W)
        for stage in self.stages:
            if isinstance(stage, Transition):
                out = stage(out)  # (B, floor(c/2), H/2, W/2)
                continue
            for layer in stage:
                out = layer(out)  # (B, c + k, H_i, W_i)
                if blocks is not None:
                    blocks.append(out)
        out = F.relu(self.bn(out))  # (B, c, h, w)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # (B, c)
        return self.fc(out)  # (B, num_classes)


@register_model("densenet_bc")
def densenet_bc(
    *,
    depths: tuple[int, ...],
    widths: tuple[float, ...],
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    in_channels: int = 3,
    dropout: float = 0.0,
) -> DenseNetBC:
    """DenseNet-BC: `depths=(n1, n2, n3)` bottleneck layers per block, `widths=(k,)` or (k1, k2, k3) growth rates.
    (6, 6, 6) x (12,) is DenseNet-BC-40 with k=12."""
    check_length("depths", depths, 3, "densenet_bc")
    check_length("widths", widths, (1, 3), "densenet_bc")
    growths = tuple(scale_channels(1, w) for w in (widths * 3 if len(widths) == 1 else widths))
    return DenseNetBC(
        depths=depths,
        growths=growths,
        num_classes=num_classes,
        mean=mean,
        std=std,
        in_channels=in_channels,
        dropout=dropout,
    )
