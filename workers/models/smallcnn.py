"""SmallCNN for 28x28 (MNIST-like) inputs, TRADES' MNIST model.

Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy" (TRADES, ICML 2019),
github.com/yaodongyu/TRADES `models/small_cnn.py` (after Carlini & Wagner's MNIST network, S&P 2017):

    conv3x3 C -> 32, ReLU, conv3x3 32 -> 32, ReLU, maxpool 2        # (B, 32, 12, 12) at 28x28
    conv3x3 32 -> 64, ReLU, conv3x3 64 -> 64, ReLU, maxpool -> 4x4  # (B, 64, 4, 4)
    fc 1024 -> 200, ReLU, dropout, fc 200 -> 200, ReLU, fc 200 -> num_classes

Convs are unpadded and have biases. The second pool is an adaptive max pool to 4x4, which at 28x28 (an 8x8 map) is
exactly TRADES' MaxPool2d(2, 2) and lets the same weights run at other sizes (e.g. 32x32 for model_counts).
`depths` and `widths` are validated by `build_model` but otherwise ignored. TRADES' default dropout is 0.5; here
`dropout` is the caller's (pass 0.5 to reproduce). Init as TRADES: conv Kaiming-normal (fan-in) with zero bias,
fc1/fc2 PyTorch's default, fc3 all zeros (logits start at 0). `forward_with_blocks` returns the two conv stages'
pooled outputs and the two hidden FC activations (4 tensors). 312,202 parameters for one channel and 10 classes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from workers.models.normalize import PixelClassifier
from workers.models.registry import register_model

CONV_CHANNELS = (32, 32, 64, 64)
HIDDEN = 200  # units of fc1 and fc2
POOLED = 4  # spatial size after the second pool


class SmallCNN(PixelClassifier):
    """TRADES' SmallCNN (module docstring)."""

    def __init__(
        self,
        *,
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        in_channels: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(mean, std, in_channels)
        c1, c2, c3, c4 = CONV_CHANNELS
        self.conv1 = nn.Conv2d(in_channels, c1, kernel_size=3)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3)
        self.conv3 = nn.Conv2d(c2, c3, kernel_size=3)
        self.conv4 = nn.Conv2d(c3, c4, kernel_size=3)
        self.fc1 = nn.Linear(c4 * POOLED * POOLED, HIDDEN)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.fc3 = nn.Linear(HIDDEN, num_classes)
        for m in (self.conv1, self.conv2, self.conv3, self.conv4):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)
        nn.init.zeros_(self.fc3.weight)
        nn.init.zeros_(self.fc3.bias)

    def _logits(self, z: Tensor, blocks: list[Tensor] | None) -> Tensor:
        kept: list[Tensor] = []
        out = F.relu(self.conv2(F.relu(self.conv1(z))))  # (B, 32, 24, 24) at 28x28
        out = F.max_pool2d(out, 2)  # (B, 32, 12, 12)
        kept.append(out)
        out = F.relu(self.conv4(F.relu(self.conv3(out))))  # (B, 64, 8, 8)
        out = F.adaptive_max_pool2d(out, POOLED)  # (B, 64, 4, 4)
        kept.append(out)
        out = self.drop(F.relu(self.fc1(out.flatten(1))))  # (B, 200)
        kept.append(out)
        out = F.relu(self.fc2(out))  # (B, 200)
        kept.append(out)
        if blocks is not None:
            blocks.extend(kept)
        return self.fc3(out)  # (B, num_classes)


@register_model("smallcnn")
def smallcnn(
    *,
    depths: tuple[int, ...],
    widths: tuple[float, ...],
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    in_channels: int = 1,
    dropout: float = 0.0,
) -> SmallCNN:
    """TRADES' SmallCNN; `depths`/`widths` are ignored (validated by build_model only)."""
    del depths, widths  # fixed architecture
    return SmallCNN(num_classes=num_classes, mean=mean, std=std, in_channels=in_channels, dropout=dropout)
