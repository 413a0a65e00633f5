"""The baseline of B3: PGD adversarial training written the way the studies' public code writes it.

Modelled on the loops of the papers' repositories (TRADES, github.com/yaodongyu/TRADES; MART,
github.com/YisenWang/MART; Rice et al., github.com/locuslab/robust_overfitting), on purpose NOT on our
attacks and methods (nothing from workers.attacks or workers.methods is imported):

- fp32 everywhere, NCHW tensors;
- a torch `DataLoader` over a `Dataset` that turns each uint8 HWC image into a PIL image and applies
  torchvision's per-sample `RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`, `ToTensor()`
  (`num_workers=1`, as TRADES and MART);
- `model.eval()` while the attack runs and `model.train()` for the update (TRADES/MART toggles);
- Rice et al.'s `attack_pgd`: every step calls `loss.backward()`, so it also computes (and then throws away)
  every weight gradient, and after the steps one more forward pass picks the restart with the largest loss;
- after the update, the clean forward that logs the batch's natural accuracy (Rice et al. log it every batch;
  here in eval mode without gradient, so BN statistics - and therefore training - match ours exactly), and
  `.item()` on the logged numbers every batch.

Training is the same as `Trainer(method="sat", bn_mode_attack="eval")`: PGD from a uniform start, linf, the same
step size and steps, CE on the adversarial example, SGD with momentum and weight decay, grad-norm clipping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms


class ArrayImages(Dataset):
    """uint8 images (N, H, W, C) and labels, returned as torchvision.datasets.CIFAR10 does: PIL + transform."""

    def __init__(self, data: np.ndarray, targets: list[int], transform: transforms.Compose) -> None:
        self.data, self.targets, self.transform = data, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.data[index])
        return self.transform(img), self.targets[index]


def train_loader(x_u8: torch.Tensor, y: torch.Tensor, *, batch_size: int, seed: int, workers: int = 1) -> DataLoader:
    """The reference's data pipeline over (N, C, H, W) uint8 images on the CPU."""
    transform_train = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
    ])
    data = x_u8.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, C), as CIFAR10.data
    dataset = ArrayImages(data, y.tolist(), transform_train)
    g = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True, generator=g)


def clamp(X: torch.Tensor, lower_limit: torch.Tensor, upper_limit: torch.Tensor) -> torch.Tensor:
    return torch.max(torch.min(X, upper_limit), lower_limit)


def attack_pgd(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epsilon: float, alpha: float, attack_iters: int,
               restarts: int = 1) -> torch.Tensor:
    """Rice et al.'s attack_pgd (linf, no early stop): returns delta."""
    max_loss = torch.zeros(y.shape[0], device=X.device)
    max_delta = torch.zeros_like(X)
    for _ in range(restarts):
        delta = torch.zeros_like(X)
        delta.uniform_(-epsilon, epsilon)
        delta = clamp(delta, 0 - X, 1 - X)
        delta.requires_grad = True
        for _ in range(attack_iters):
            output = model(X + delta)
            loss = F.cross_entropy(output, y)
            loss.backward()
            grad = delta.grad.detach()  # type: ignore[union-attr]
            d = delta.data
            d = torch.clamp(d + alpha * torch.sign(grad), min=-epsilon, max=epsilon)
            d = clamp(d, 0 - X, 1 - X)
            delta.data = d
            delta.grad.zero_()  # type: ignore[union-attr]
        all_loss = F.cross_entropy(model(X + delta), y, reduction="none")
        max_delta[all_loss >= max_loss] = delta.detach()[all_loss >= max_loss]
        max_loss = torch.max(max_loss, all_loss)
    return max_delta


@dataclass
class RefSettings:
    epsilon: float  # [0, 1] pixel units
    alpha: float  # step size, pixel units
    attack_iters: int
    lr: float  # per batch
    momentum: float
    weight_decay: float
    grad_clip: float | None


def train_epoch(model: nn.Module, loader: DataLoader, opt: torch.optim.Optimizer, s: RefSettings,
                device: torch.device) -> dict[str, float]:
    """One epoch of the reference loop; returns the logged averages and the epoch's wall time."""
    t0 = time.perf_counter()
    model.train()
    train_loss = train_acc = train_nat_acc = 0.0
    train_n = 0
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        model.eval()
        delta = attack_pgd(model, X, y, s.epsilon, s.alpha, s.attack_iters)
        model.train()
        robust_output = model(torch.clamp(X + delta, 0, 1))
        robust_loss = F.cross_entropy(robust_output, y)
        opt.zero_grad()
        robust_loss.backward()
        if s.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        opt.step()
        model.eval()
        with torch.no_grad():
            output = model(X)
        model.train()
        train_loss += robust_loss.item() * y.size(0)
        train_acc += (robust_output.max(1)[1] == y).sum().item()
        train_nat_acc += (output.max(1)[1] == y).sum().item()
        train_n += y.size(0)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"seconds": time.perf_counter() - t0, "adv_loss": train_loss / max(train_n, 1),
            "adv_acc": train_acc / max(train_n, 1), "nat_acc": train_nat_acc / max(train_n, 1)}


def make_sgd(model: nn.Module, s: RefSettings) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
