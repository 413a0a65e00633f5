"""workers.evaluate: robust = correct AND stable exactly (an attack that 'fixes' a wrong prediction is not
robustness), and the counts are measured in fp32 even under bf16 autocast."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from workers.evaluate import evaluate


class Identity(nn.Module):
    """logits = the image itself: (B, 1, 1, K) uint8/255 -> (B, K); argmax is set by hand."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)


def onehot(classes: list[int], k: int = 3) -> Tensor:
    """(B, 1, 1, k) uint8 images whose argmax is each class."""
    x = torch.full((len(classes), 1, 1, k), 10, dtype=torch.uint8)
    x[torch.arange(len(classes)), 0, 0, torch.tensor(classes)] = 200
    return x


def test_robust_is_correct_and_stable_even_when_the_attack_fixes_a_wrong_prediction() -> None:
    y = torch.tensor([0, 1, 2, 0])
    clean = onehot([0, 0, 2, 1])  # correct, wrong, correct, wrong
    adv = onehot([0, 1, 1, 1]).float() / 255  # kept, fixed (wrong -> right), broken, kept wrong

    def attack(model: nn.Module, x: Tensor, t: Tensor) -> Tensor:
        return adv[: len(t)]

    m = evaluate(Identity(), clean, y, attack=attack, batch_size=8)
    correct = torch.tensor([True, False, True, False])
    stable = torch.tensor([True, False, False, True])
    assert (m["n_total"], m["n_correct"], m["n_stable"]) == (4, 2, 2)
    assert m["n_robust"] == int((correct & stable).sum()) == 1  # example 1 (fixed by the attack) is not robust
    assert m["robust_acc"] == 0.25 and m["clean_acc"] == 0.5 and m["stability"] == 0.5


def test_counts_are_fp32_under_bf16_autocast() -> None:
    """Logits 0.7843 and 0.7859 (weight 1.002): fp32 says class 1; bf16 rounds the weight to 1.0 and ties."""
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.002]]))
    model = nn.Sequential(nn.Flatten(), lin)
    x, y = torch.full((4, 1, 1, 2), 200, dtype=torch.uint8), torch.ones(4, dtype=torch.long)
    fp32 = evaluate(model, x, y, attack=None, batch_size=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x.float() / 255).argmax(1).tolist() == [0, 0, 0, 0]  # bf16 would get it wrong
        amp = evaluate(model, x, y, attack=None, batch_size=4)
    assert fp32["n_correct"] == amp["n_correct"] == 4
    assert amp == fp32
