"""The stage-wise WideResNet of Study A (science.md section 1).

Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016 (arXiv:1605.07146), in the pre-activation form used by
the adversarial-robustness literature: Zhang et al., "Theoretically Principled Trade-off between Robustness and
Accuracy" (TRADES, ICML 2019, github.com/yaodongyu/TRADES `models/wideresnet.py`) and Huang et al., "Exploring
Architectural Ingredients of Adversarially Robust Deep Neural Networks" (NeurIPS 2021, github.com/HanxunH/RobustWRN
`models/RobustWideResNet.py`), whose per-stage depth/width configuration this model follows.

Layout for 32x32 inputs, `depths=(D1, D2, D3)`, `widths=(W1, W2, W3)`:

    stem   3x3 conv in_channels -> 16, stride 1, no bias, no BN/ReLU after it          # (B, 16, 32, 32)
    stage1 D1 blocks, round(16*W1) channels, stride 1 on its first block                # (B, c1, 32, 32)
    stage2 D2 blocks, round(32*W2) channels, stride 2 on its first block                # (B, c2, 16, 16)
    stage3 D3 blocks, round(64*W3) channels, stride 2 on its first block                # (B, c3, 8, 8)
    head   BN -> ReLU -> global average pool -> linear with bias                        # (B, num_classes)

WRN-34-10 is d5-5-5 w10-10-10 (depth 34 = 6*5 + 4) with exactly 46,160,474 parameters for 10 classes.

Decisions (named, documented, tested):
- **Removed stages** (`D_i = 0`): the stage and its stride are dropped; the remaining stages keep their own strides
  and the head takes the last remaining stage's channels. d5-5-0 therefore has two stages (strides 1, 2) and ends
  at (B, c2, 16, 16); d0-5-5 has strides 2, 2 and ends at 8x8. The global pool is adaptive, so any size works.
- **Shortcut rule**: a 1x1 conv shortcut when in != out channels *or* stride != 1 (RobustWRN's rule; TRADES' code
  uses in != out only, which crashes when a stride-2 block keeps its channels, e.g. w4-2-x: 64 -> 64).
- `sub_block1` (default False): TRADES' `WideResNet` constructs a `sub_block1` (D1 more stage-1 blocks) that its
  forward never calls; its parameters are nevertheless in `parameters()`, so TRADES' own model reports 48,262,586
  parameters for WRN-34-10. The published 46,160,474 (RobustBench, which made it `sub_block1=False`; Huang et al.,
  whose code has no sub_block1) is the count *without* it. `sub_block1=True` adds the unused block so that TRADES
  checkpoints' `sub_block1.*` weights have a home; it changes the parameter count, never the function or FLOPs.
- `stride_shortcut_input` (default "raw"; TrialConfig.wrn_shortcut): a shortcut conv takes the first BN-ReLU output
  when the channel counts differ, and the block's *raw* input when they are equal (a stride-2 block that keeps its
  channels), exactly as RobustWRN's code does (science.md). "preact" feeds the BN-ReLU output to that shortcut too
  (the earlier reading of science.md). Parameter counts are identical either way.

State-dict keys follow TRADES (`conv1`, `block{i}.layer.{j}.{bn1,conv1,bn2,conv2,convShortcut}`, `bn1`, `fc`), plus
`normalize.mean` / `normalize.std`.

The same body, with a 64-channel stem, four stages (strides 1, 2, 2, 2) and PyTorch's default init, is
PreActResNet-18 (`workers.models.preactresnet`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from workers.models.normalize import PixelClassifier
from workers.models.registry import check_length, register_model, scale_channels

ShortcutInput = Literal["preact", "raw"]

BASE_CHANNELS = (16, 32, 64)  # per stage, multiplied by the stage's width factor
STRIDES = (1, 2, 2)  # on the first block of each stage
STEM_CHANNELS = 16


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Pre-activation block: BN -> ReLU -> conv3x3(stride) -> BN -> ReLU -> (dropout) -> conv3x3, plus shortcut."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, dropout: float = 0.0, shortcut_input: ShortcutInput = "raw"
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.dropout = dropout
        self.convShortcut = (  # noqa: N815 (TRADES' state-dict name)
            nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)
            if in_ch != out_ch or stride != 1
            else None
        )
        # only RobustWRN's equal-channel stride-2 case ever takes the raw input
        self.shortcut_from_raw = shortcut_input == "raw" and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:  # (B, in, H, W) -> (B, out, H/stride, W/stride)
        a = F.relu(self.bn1(x))  # (B, in, H, W)
        out = F.relu(self.bn2(self.conv1(a)))  # (B, out, H/s, W/s)
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)  # (B, out, H/s, W/s)
        if self.convShortcut is None:
            return x + out
        return self.convShortcut(x if self.shortcut_from_raw else a) + out


class NetworkBlock(nn.Module):
    """One stage: `depth` blocks, the first with `stride` and `in_ch` inputs (TRADES' name and layout)."""

    def __init__(
        self, depth: int, in_ch: int, out_ch: int, stride: int, dropout: float, shortcut_input: ShortcutInput
    ) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(
                BasicBlock(in_ch if j == 0 else out_ch, out_ch, stride if j == 0 else 1, dropout, shortcut_input)
                for j in range(depth)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(PixelClassifier):
    """Stage-wise pre-activation ResNet; `forward_with_blocks` returns every BasicBlock's output (sum(depths)).

    Args:
        depths: blocks per stage (D1, D2, D3); 0 removes the stage and its stride.
        channels: output channels per stage (already rounded from the width factors).
        num_classes, mean, std, in_channels, dropout: see `workers.models.build_model`.
        stem_channels: output channels of the stem conv (16 for WRN, 64 for PreActResNet-18).
        strides: stride of each stage's first block, one per stage.
        init: "wrn" (the reference WRN init, `init_wrn_`) or "default" (PyTorch's layer defaults).
        sub_block1: add TRADES' unused `sub_block1` (module docstring); default False.
        stride_shortcut_input: "raw" (RobustWRN's code, science.md; default) or "preact"; module docstring.
    """

    def __init__(
        self,
        *,
        depths: tuple[int, ...],
        channels: tuple[int, ...],
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        in_channels: int = 3,
        dropout: float = 0.0,
        stem_channels: int = STEM_CHANNELS,
        strides: tuple[int, ...] = STRIDES,
        init: Literal["wrn", "default"] = "wrn",
        sub_block1: bool = False,
        stride_shortcut_input: ShortcutInput = "raw",
    ) -> None:
        super().__init__(mean, std, in_channels)
        if stride_shortcut_input not in ("preact", "raw"):
            raise ValueError(f"stride_shortcut_input must be 'preact' or 'raw', got {stride_shortcut_input!r}")
        if init not in ("wrn", "default"):
            raise ValueError(f"init must be 'wrn' or 'default', got {init!r}")
        self.conv1 = conv3x3(in_channels, stem_channels)
        self.stage_names: list[str] = []
        c = stem_channels
        for i, (depth, out, stride) in enumerate(zip(depths, channels, strides, strict=True), start=1):
            if depth == 0:
                continue  # removed stage: no blocks, no stride
            self.add_module(f"block{i}", NetworkBlock(depth, c, out, stride, dropout, stride_shortcut_input))
            self.stage_names.append(f"block{i}")
            c = out
        if sub_block1:  # never called in forward (TRADES); parameters only
            self.sub_block1 = NetworkBlock(depths[0], stem_channels, channels[0], 1, dropout, stride_shortcut_input)
        self.bn1 = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, num_classes)
        self.num_features = c
        if init == "wrn":
            init_wrn_(self)

    def _logits(self, z: Tensor, blocks: list[Tensor] | None) -> Tensor:
        out = self.conv1(z)  # (B, stem_channels, H, W)
        for name in self.stage_names:
            for block in getattr(self, name).layer:
                out = block(out)  # (B, c_i, H_i, W_i)
                if blocks is not None:
                    blocks.append(out)
        out = F.relu(self.bn1(out))  # (B, c, h, w)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # (B, c)
        return self.fc(out)  # (B, num_classes)


def init_wrn_(model: nn.Module) -> None:
    """The WRN init of the reference code: conv N(0, sqrt(2 / (k*k*out))), BN weight 1 / bias 0, linear bias 0.

    A no-op on the meta device (there are no values to set; skipping it keeps meta builds fast).
    """
    if any(p.is_meta for p in model.parameters()):
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


@register_model("wrn")
def wrn(
    *,
    depths: tuple[int, ...],
    widths: tuple[float, ...],
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    in_channels: int = 3,
    dropout: float = 0.0,
    sub_block1: bool = False,
    stride_shortcut_input: ShortcutInput = "raw",
) -> WideResNet:
    """Stage-wise WRN: `depths=(D1, D2, D3)`, `widths=(W1, W2, W3)`, channels round(16*W1), round(32*W2),
    round(64*W3); options `sub_block1` and `stride_shortcut_input` as in the module docstring."""
    check_length("depths", depths, 3, "wrn")
    check_length("widths", widths, 3, "wrn")
    channels = tuple(scale_channels(base, w) for base, w in zip(BASE_CHANNELS, widths, strict=True))
    return WideResNet(
        depths=depths,
        channels=channels,
        num_classes=num_classes,
        mean=mean,
        std=std,
        in_channels=in_channels,
        dropout=dropout,
        sub_block1=sub_block1,
        stride_shortcut_input=stride_shortcut_input,
    )
