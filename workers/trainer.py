"""Adversarial training of one trial: the loop, per-epoch validation, best-checkpoint tracking, resumption.

The loop is flat and device-resident (airbench style): the data sits on the device as uint8, batches are
augmented there, metrics accumulate as device tensors and are read once per epoch. The training method is a
function returning a loss (workers.methods); the trainer alone touches the optimiser.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from search_spaces.config import TrialConfig
from workers.attacks import make_attack
from workers.data import DataSplits, iterate_batches, load_splits
from workers.evaluate import evaluate, layout_of
from workers.methods import MethodContext, get_method
from workers.models import build_model
from workers.optim import lr_at, make_optimizer, validate_schedule

log = logging.getLogger(__name__)


NATURAL_EVERY = 8  # SAT/FGSM: batches per no-grad clean forward that measures the natural risk (the
# other batches skip it; batches are shuffled, so the epoch means stay unbiased)


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or inf: the trial ends as failed with reason `non_finite_loss`."""

    def __init__(self, epoch: int):
        super().__init__(f"non_finite_loss at epoch {epoch}")
        self.epoch = epoch


@dataclass
class TrainState:
    """Everything a resumed trial needs; saved in every epoch's checkpoint."""

    epoch: int = 0  # completed epochs
    model: dict[str, Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    method_state: dict[str, Any] = field(default_factory=dict)
    best_epoch: int | None = None
    best_robust_acc: float = -1.0
    best_model: dict[str, Tensor] | None = None
    seconds: float = 0.0  # device-seconds spent so far, across resumptions
    rng: dict[str, Any] = field(default_factory=dict)  # torch RNG states: a resumed run continues the same stream

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(**d)


def autocast(cfg: TrialConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA unless fp32 is asked for (BN runs in fp32 under autocast); nothing on CPU."""
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def eval_attack(cfg: TrialConfig, name: str = "pgd") -> Callable[..., Tensor] | None:
    a = cfg.eval_attack
    if cfg.eps == 0.0:
        return None
    if name == "fgsm":  # the classic single step of size eps from x itself
        return make_attack("fgsm", eps=cfg.eps, norm=cfg.norm, steps=1, step_size=None, start="none")
    options = {"kappa": a.kappa} if name == "cw" else {}
    return make_attack(name, eps=cfg.eps, norm=cfg.norm, steps=a.steps, step_size=a.resolved_step_size(cfg.eps, cfg.norm),
                       start=a.start, **options)


class Trainer:
    """Trains one configuration. `on_epoch(metrics, state)` is called after every epoch (report + checkpoint)."""

    def __init__(self, cfg: TrialConfig, *, device: torch.device, data_root: str | None, data: DataSplits | None = None):
        validate_schedule(cfg.schedule, cfg.epochs)
        self.cfg, self.device = cfg, device
        torch.manual_seed(cfg.seed)
        self.data = data if data is not None else load_splits(cfg, data_root=data_root, device=device)
        d = self.data
        self.model = build_model(
            cfg.model, depths=cfg.depths, widths=cfg.widths, num_classes=d.num_classes, mean=d.mean, std=d.std,
            in_channels=d.channels, dropout=cfg.dropout,
            **({"stride_shortcut_input": cfg.wrn_shortcut} if cfg.model == "wrn" else {}),
        ).to(device)
        if cfg.init_from is not None:  # fine-tuning from another run's weights (eps* fast approximation)
            from workers.init_from import load_init_weights

            self.model.load_state_dict(load_init_weights(cfg.init_from))
        self.optimizer = make_optimizer(self.model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.method = get_method(cfg.method)
        a = cfg.train_attack
        step = a.resolved_step_size(cfg.eps, cfg.norm)
        self.ctx = MethodContext(
            eps=cfg.eps, norm=cfg.norm, lam=cfg.lam,
            attack=make_attack(a.name, eps=cfg.eps, norm=cfg.norm, steps=a.steps, step_size=step, start=a.start),
            steps=a.steps, step_size=step, start=a.start, bn_mode=cfg.bn_mode_attack,
            zeta=cfg.zeta, war_alpha=cfg.war_alpha,
        )
        self.state = TrainState()
        # called as batch_hook(self, epoch, batch) before each training batch (fault injection in tests:
        # workers.fault_injection); an OutOfMemoryError raised by a batch propagates to the caller
        self.batch_hook: Callable[[Trainer, int, int], None] | None = None

    # -- resumption -------------------------------------------------------------------------------------------
    def load(self, state: TrainState) -> None:
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.ctx.state = dict(state.method_state)
        if "cpu" in state.rng:
            torch.set_rng_state(state.rng["cpu"])
        if "cuda" in state.rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(state.rng["cuda"], self.device)
        self.state = state

    def snapshot(self) -> TrainState:
        s = self.state
        s.model = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        s.optimizer = copy.deepcopy(self.optimizer.state_dict())
        s.method_state = copy.deepcopy(self.ctx.state)
        s.rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            s.rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return s

    def _fast_layout(self) -> torch.memory_format:
        """Put the model's convs in channels_last, on every device (tensor cores on CUDA; oneDNN's NHWC kernels on
        CPU, 1.1-1.5x faster here than NCHW in fp32 and bf16), once; the Parameters stay the same objects, so the
        optimiser is unaffected. Returns the layout batches should have."""
        if layout_of(self.model) != torch.channels_last:
            self.model.to(memory_format=torch.channels_last)
        return layout_of(self.model)

    # -- one epoch --------------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg, d, dev = self.cfg, self.data, self.device
        steps_per_epoch = max(1, len(d.train_y) // cfg.batch_size)
        gen = torch.Generator(device=d.train_x.device).manual_seed(cfg.seed * 1_000_003 + epoch)
        # device-side sums, read once per epoch (no host sync per batch): clean CE, natural risk * B and robust
        # reg * B of the batches with a natural-risk measurement; adv CE of all batches; adv CE of the batches
        # without one; local Lipschitz
        sums = torch.zeros(6, device=dev)
        zero = torch.zeros((), device=dev)
        n = n_nat = n_lip = 0
        lam_sum = 0.0
        lam_traj: list[float] = []
        fmt = self._fast_layout()
        self.model.train()
        for i, (x, y) in enumerate(iterate_batches(d.train_x, d.train_y, batch_size=cfg.batch_size, shuffle=True,
                                                   augment=True, flip=d.hflip, generator=gen, drop_last=True)):
            lr = lr_at(epoch, base_lr=cfg.lr, epochs=cfg.epochs, schedule=cfg.schedule, step_in_epoch=i,
                       steps_per_epoch=steps_per_epoch)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            if self.batch_hook is not None:
                self.batch_hook(self, epoch, i)
            x = x.contiguous(memory_format=fmt)
            self.ctx.natural_forward = i % NATURAL_EVERY == 0
            with autocast(cfg, dev):
                out = self.method(self.model, x, y, self.ctx)
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            b = len(y)
            measured = out.clean_logits is not None
            clean_ce = _ce_sum(out.clean_logits, y)
            adv_ce = _ce_sum(out.adv_logits, y) if out.adv_logits is not None else clean_ce
            lip = out.local_lipschitz
            sums += torch.stack([clean_ce, out.natural_risk.float() * b if measured else zero,
                                 out.robust_reg.float() * b if measured else zero, adv_ce,
                                 zero if measured else adv_ce, zero if lip is None else torch.as_tensor(lip, device=dev)])
            n, n_nat, n_lip = n + b, n_nat + (b if measured else 0), n_lip + (lip is not None)
            lam_sum += float(out.lam) * b
            if cfg.method.startswith("war"):
                lam_traj.append(float(out.lam))
        s = sums.tolist()
        if not all(math.isfinite(v) for v in s):
            raise NonFiniteLoss(epoch + 1)
        n, n_nat = max(n, 1), max(n_nat, 1)
        natural = s[1] / n_nat
        # a batch without a natural-risk measurement (SAT/FGSM, robust_reg = L(x') - L(x)) counts its adversarial
        # CE minus the epoch's natural risk, so robust_reg = adv_loss_train - natural_risk exactly
        robust = (s[2] + s[4]) / n - natural * (n - min(n_nat, n)) / n
        return {
            "clean_loss_train": s[0] / n_nat, "adv_loss_train": s[3] / n, "natural_risk": natural, "robust_reg": robust,
            "lam_t": lam_sum / n, "local_lipschitz": s[5] / n_lip if n_lip else None,
            "lr": self.optimizer.param_groups[0]["lr"], "lam_trajectory": lam_traj or None,
        }

    def validate(self, split: str = "val") -> dict[str, Any]:
        """Clean and robust accuracy, stability and losses on the validation split (`_val` names), or on the test
        set (`_test` names) for cfg.select_on == 'test'."""
        d = self.data
        x, y = (d.test_x, d.test_y) if split == "test" else (d.val_x, d.val_y)
        with autocast(self.cfg, self.device):
            m = evaluate(self.model, x, y, attack=eval_attack(self.cfg), batch_size=self.cfg.eval_batch_size)
        return {"clean_acc": m["clean_acc"], "robust_acc": m["robust_acc"], "stability": m["stability"],
                f"clean_loss_{split}": m["clean_loss_test"], f"adv_loss_{split}": m["adv_loss_test"]}

    # -- the whole run ----------------------------------------------------------------------------------------
    def fit(self, on_epoch: Callable[[dict[str, Any], TrainState], None] | None = None) -> TrainState:
        cfg = self.cfg
        for epoch in range(self.state.epoch, cfg.epochs):
            t0 = time.perf_counter()
            metrics = self.train_epoch(epoch)
            split = "test" if cfg.select_on == "test" else "val"  # per-epoch evaluation and best selection
            metrics.update(self.validate(split) if split == "test" or len(self.data.val_y) else {})
            _sync(self.device)
            metrics["device_seconds"] = time.perf_counter() - t0
            self.state.seconds += metrics["device_seconds"]
            self.state.epoch = epoch + 1
            if (cfg.select_on != "last" and epoch + 1 > cfg.best_from * cfg.epochs - 1e-9
                    and metrics["robust_acc"] > self.state.best_robust_acc):
                self.state.best_robust_acc = metrics["robust_acc"]
                self.state.best_epoch = epoch + 1
                self.state.best_model = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            metrics["epoch"] = epoch + 1
            log.info("epoch %d/%d %s", epoch + 1, cfg.epochs, {k: v for k, v in metrics.items() if k != "lam_trajectory"})
            if on_epoch is not None:
                on_epoch(metrics, self.snapshot())
        return self.state


def _ce_sum(logits: Tensor | None, y: Tensor) -> Tensor:
    if logits is None:
        return torch.zeros((), device=y.device)
    return nn.functional.cross_entropy(logits.float(), y, reduction="sum").detach()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
