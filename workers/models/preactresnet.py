"""PreActResNet-18 for 32x32 inputs (Studies B and C).

He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016 (arXiv:1603.05027), in the CIFAR form used by
Rice et al., "Overfitting in adversarially robust deep learning", ICML 2020 (github.com/locuslab/robust_overfitting
`preactresnet.py`) and Wong et al., "Fast is better than free", ICLR 2020:

    stem   3x3 conv in_channels -> 64, stride 1, no bias                                 # (B, 64, 32, 32)
    stage1 D1 blocks, round(64*W1) channels, stride 1                                   # (B, c1, 32, 32)
    stage2 D2 blocks, round(128*W2) channels, stride 2                                  # (B, c2, 16, 16)
    stage3 D3 blocks, round(256*W3) channels, stride 2                                  # (B, c3, 8, 8)
    stage4 D4 blocks, round(512*W4) channels, stride 2                                  # (B, c4, 4, 4)
    head   BN -> ReLU -> global average pool -> linear with bias                        # (B, num_classes)

Its PreActBlock is exactly the WRN `BasicBlock` (BN-ReLU -> conv3x3(stride) -> BN-ReLU -> conv3x3, a 1x1 conv
shortcut on the first BN-ReLU output when stride != 1 or channels change), so the body is the shared
`WideResNet` with a 64-channel stem, four stages and PyTorch's default init (the reference code sets none).
depths=(2, 2, 2, 2), widths=(1, 1, 1, 1) is PreActResNet-18: 11,172,170 parameters for 10 classes. A stage depth
of 0 removes the stage and its stride, as for "wrn".
"""

from __future__ import annotations

from workers.models.registry import check_length, register_model, scale_channels
from workers.models.wrn import WideResNet

BASE_CHANNELS = (64, 128, 256, 512)  # per stage, multiplied by the stage's width factor
STRIDES = (1, 2, 2, 2)  # on the first block of each stage
STEM_CHANNELS = 64


@register_model("preactresnet18")
def preactresnet18(
    *,
    depths: tuple[int, ...],
    widths: tuple[float, ...],
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    in_channels: int = 3,
    dropout: float = 0.0,
) -> WideResNet:
    """PreActResNet with `depths=(D1..D4)` blocks and channels round(64*W1), round(128*W2), round(256*W3),
    round(512*W4); (2, 2, 2, 2) x (1, 1, 1, 1) is PreActResNet-18. Dropout (default off, as in the reference)
    sits between the two convs of each block."""
    check_length("depths", depths, 4, "preactresnet18")
    check_length("widths", widths, 4, "preactresnet18")
    channels = tuple(scale_channels(base, w) for base, w in zip(BASE_CHANNELS, widths, strict=True))
    return WideResNet(
        depths=depths,
        channels=channels,
        num_classes=num_classes,
        mean=mean,
        std=std,
        in_channels=in_channels,
        dropout=dropout,
        stem_channels=STEM_CHANNELS,
        strides=STRIDES,
        init="default",
    )
