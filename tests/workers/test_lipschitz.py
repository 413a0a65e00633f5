"""Empirical Lipschitz constant: logits and per-block values on a model whose constants are known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from workers.metrics.lipschitz import empirical_lipschitz, lipschitz_ratios


class Scaled(nn.Module):
    """Two 'blocks' b1 = 3x, b2 = -2 b1; logits = the first 4 entries of b2 (each block output is (B, C, H, W))."""

    def __init__(self) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.9)  # would scramble the values in train mode
        self.modes: list[bool] = []

    def forward_with_blocks(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        self.modes.append(self.training)
        b1 = self.dropout(3 * x)
        b2 = -2 * b1
        return b2.flatten(1)[:, :4], [b1, b2]

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_blocks(x)[0]


def test_values_by_hand_and_zero_perturbations_skipped():
    x = torch.full((3, 1, 2, 4), 0.5)  # 8 pixels per example
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] += 0.1  # in the logits: ||f - f'||_1 = 0.6, ||x - x'||_inf = 0.1 -> 6
    x_adv[1, 0, 1, 0] += 0.2  # pixel 4: not in the logits -> 0; blocks: 3 and 6
    x_adv[1, 0, 1, 1] -= 0.1  #   b1: 3 (0.2 + 0.1) / 0.2 = 4.5; b2: 9
    # example 2 unchanged: skipped (not counted as 0)
    model = Scaled().train()
    value, blocks = empirical_lipschitz(model, x, x_adv)
    assert value == pytest.approx((6.0 + 0.0) / 2)
    assert blocks == pytest.approx([(3.0 + 4.5) / 2, (6.0 + 9.0) / 2])
    assert model.modes == [False] and model.training and model.dropout.training  # eval inside, restored after
    logits, per_block = lipschitz_ratios(model, x, x_adv)
    assert logits.shape == (2,) and len(per_block) == 2


def test_no_perturbation_at_all_is_nan():
    x = torch.rand(2, 1, 2, 4)
    value, blocks = empirical_lipschitz(Scaled(), x, x.clone())
    assert math.isnan(value) and len(blocks) == 2 and all(math.isnan(b) for b in blocks)


def test_no_gradient_is_recorded():
    lin = nn.Linear(8, 4)

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = lin

        def forward_with_blocks(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
            h = self.lin(x.flatten(1))
            return h, [h]

    x = torch.rand(4, 1, 2, 4)
    value, blocks = empirical_lipschitz(M(), x, (x + 0.01).clamp(0, 1))
    assert value > 0 and blocks == pytest.approx([value])
    assert lin.weight.grad is None


def test_ratios_are_fp32_inside_bf16_autocast():
    """bf16 autocast is for training and attacks: the Lipschitz ratios inside it equal the fp32 ones."""
    from testkit.tiny_net import TinyNet

    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.rand(16, 3, 8, 8)
    x_adv = (x + (1 / 255) * torch.randn_like(x).sign()).clamp(0, 1)
    logits, blocks = lipschitz_ratios(model, x, x_adv)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp_logits, amp_blocks = lipschitz_ratios(model, x, x_adv)
    assert amp_logits.dtype == torch.float32
    torch.testing.assert_close(amp_logits, logits, rtol=1e-6, atol=0)
    for a, b in zip(amp_blocks, blocks, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
