"""A tiny residual classifier for attack and method tests (fast on CPU, with BN and one block), its synthetic data
and its standard training."""

from __future__ import annotations

import torch
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


def synthetic(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """10 classes: a fixed +-1 pattern per class at amplitude 0.04 on grey plus N(0, 0.1) noise, in [0, 1]."""
    patterns = torch.randint(0, 2, (10, 3, 8, 8), generator=torch.Generator().manual_seed(123)).float() * 2 - 1
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.5 + 0.04 * patterns[y] + 0.1 * torch.randn(n, 3, 8, 8, generator=g)
    return x.clamp(0, 1), y


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def fit(model: nn.Module, x: Tensor, y: Tensor, *, opt: torch.optim.Optimizer, epochs: int, batch: int,
        train_eps: float = 0.0, steps: int = 5, shuffle: bool = False) -> nn.Module:
    """Cross-entropy training, clean or (train_eps > 0) on PGD-`steps` examples at step train_eps/(steps-1) made in
    eval mode; batches in order, or reshuffled each epoch from torch's global RNG. Returns the model in eval mode."""
    from workers.attacks import make_attack

    step = train_eps / max(steps - 1, 1)
    attack = make_attack("pgd", eps=train_eps, steps=steps, step_size=step) if train_eps else None
    for _ in range(epochs):
        order = torch.randperm(len(y)) if shuffle else torch.arange(len(y))
        for i in range(0, len(y), batch):
            xb, yb = x[order[i : i + batch]], y[order[i : i + batch]]
            if attack is not None:
                model.eval()
                xb = attack(model, xb, yb).detach()
                model.train()
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval()


def trained_tiny_net(*, train_eps: float = 0.0) -> TinyNet:
    """A TinyNet trained with seed 0 on synthetic(2000, seed=1): Adam 1e-2, 5 epochs of batches of 100, clean or
    (train_eps > 0) PGD-5 adversarial training at step train_eps/4; returned in eval mode without gradients."""
    torch.manual_seed(0)
    model = TinyNet()
    x, y = synthetic(2000, seed=1)
    fit(model, x, y, opt=torch.optim.Adam(model.parameters(), lr=1e-2), epochs=5, batch=100, train_eps=train_eps)
    model.zero_grad(set_to_none=True)
    return model
