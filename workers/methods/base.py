"""What every training method shares: its context and output, BN-mode handling, the attack with the local
Lipschitz tracker, and the 'train on the adversarial example' loss of SAT and FGSM training."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from workers.attacks import Attack


@dataclass
class MethodContext:
    """Per-trial settings of a method (built once by the trainer) plus its mutable per-trial state."""

    eps: float  # attack radius, [0, 1] pixel units
    norm: str  # linf | l2
    lam: float  # robust-regularisation weight (TRADES' beta); WAR ignores it and adapts its own
    attack: Attack | None  # training attack made from cfg.train_attack (None for clean training)
    steps: int  # attack steps, for methods that build their own attack (TRADES, FGSM)
    step_size: float  # pixel units per step
    start: str  # uniform | normal | none
    bn_mode: str = "eval"  # BN mode while generating the attack; the caller's mode is restored afterwards
    zeta: float | None = None  # WAR's target ratio natural risk / robust regulariser
    war_alpha: float = 0.1  # WAR's lambda step
    natural_forward: bool = True  # measure this batch's sampled diagnostics (the trainer asks on a sample of
    # batches; training itself never needs them): SAT/FGSM's no-grad clean forward for the natural risk, TRADES'
    # cross-entropy input gradient for the local Lipschitz (its attack's own gradient is the KL's)
    state: dict[str, Any] = field(default_factory=dict)  # e.g. WAR's 'lam_t'; checkpointed by the trainer


@dataclass
class MethodOutput:
    loss: Tensor  # scalar to back-propagate
    natural_risk: Tensor  # detached scalar: mean CE on the clean batch (NaN when not measured: clean_logits None)
    robust_reg: Tensor  # detached scalar: the regulariser before lambda (SAT: L(x')-L(x); GAT: clipped; TRADES: KL)
    lam: float  # lambda used this batch (WAR: lam_t)
    local_lipschitz: Tensor | float | None  # max over attack steps of the batch mean of ||grad_x CE(f(x_k), y)||_1
    # for every method (a detached 0-dim tensor: no host sync per batch); None: no attack, or not measured
    clean_logits: Tensor | None  # detached (B, K); None: the natural risk was not measured (ctx.natural_forward)
    adv_logits: Tensor | None  # detached (B, K)


MethodFn = Callable[[nn.Module, Tensor, Tensor, MethodContext], MethodOutput]


@contextmanager
def bn_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Put the model in train ('train') or eval ('eval') mode; restore every submodule's own mode on exit."""
    if mode not in ("train", "eval"):
        raise ValueError(f"unknown bn_mode '{mode}'; known: train, eval")
    saved = [(m, m.training) for m in model.modules()]
    model.train(mode == "train")
    try:
        yield
    finally:
        for m, training in saved:
            m.training = training


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Forward passes inside do not move BN running statistics: train-mode BN normalises with the batch
    statistics as usual but skips the update (track_running_stats off; no in-place write, so autograd graphs
    built outside stay valid)."""
    bns = [b for b in model.modules() if isinstance(b, _BatchNorm) and b.track_running_stats]
    for b in bns:
        b.track_running_stats = False
    try:
        yield
    finally:
        for b in bns:
            b.track_running_stats = True


class GradL1Max:
    """grad_hook that keeps max over attack steps of the batch mean of ||g_b||_1 on the device."""

    def __init__(self) -> None:
        self.best: Tensor | None = None

    def __call__(self, g: Tensor) -> None:  # g (B, C, H, W)
        v = g.detach().float().abs().flatten(1).sum(1).mean()
        self.best = v if self.best is None else torch.maximum(self.best, v)

    def value(self) -> float | None:
        """The maximum as a Python float (one host sync)."""
        return None if self.best is None else float(self.best)


def run_attack(model: nn.Module, x: Tensor, y: Tensor, ctx: MethodContext, attack: Attack | None = None,
               track: bool = True) -> tuple[Tensor, Tensor | None]:
    """x_adv from `attack` (default ctx.attack) in ctx.bn_mode, and the local Lipschitz value along its steps (a
    detached 0-dim tensor, left on the device; None when `track` is False: no hook is passed)."""
    attack = attack if attack is not None else ctx.attack
    if attack is None:
        raise ValueError("this method needs ctx.attack (made from cfg.train_attack)")
    tracker = GradL1Max()
    with bn_mode(model, ctx.bn_mode):
        x_adv = attack(model, x, y, grad_hook=tracker if track else None)
    return x_adv, tracker.best


def train_on_adversarial(model: nn.Module, x: Tensor, y: Tensor, ctx: MethodContext, attack: Attack | None = None
                         ) -> MethodOutput:
    """Loss L(x') on the adversarial example only (lambda = 1). The clean forward that gives the natural risk
    runs without gradient and with BN statistics frozen, so training is exactly that of the reference code; it is
    skipped (natural_risk and robust_reg NaN, clean_logits None) when ctx.natural_forward is False."""
    x_adv, lip = run_attack(model, x, y, ctx, attack)
    adv_logits = model(x_adv).float()
    loss = F.cross_entropy(adv_logits, y)
    if not ctx.natural_forward:
        nan = torch.full((), float("nan"), device=loss.device)
        return MethodOutput(loss=loss, natural_risk=nan, robust_reg=nan, lam=1.0, local_lipschitz=lip,
                            clean_logits=None, adv_logits=adv_logits.detach())
    with torch.no_grad(), frozen_bn_stats(model):
        clean_logits = model(x).float()
    nat = F.cross_entropy(clean_logits, y)
    return MethodOutput(loss=loss, natural_risk=nat, robust_reg=loss.detach() - nat, lam=1.0, local_lipschitz=lip,
                        clean_logits=clean_logits, adv_logits=adv_logits.detach())
