"""B1, B2 and B4: how close an adversarial training step is to its arithmetic, on the workers' own code.

Work of PGD-k training per image, in forward-pass equivalents F (a backward pass that computes input gradients
only costs about F, one that also computes weight gradients about 2F):

    attack step      = forward + input-gradient backward         = 2F
    clean train step = forward + full backward                   = 3F
    PGD-10 train     = 10 attack steps + one clean train step    = 23F

so B1 (attack step / clean step) cannot beat 2/3 and B2 (PGD-10 epoch / clean epoch) cannot beat 23/3.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from workers.bench.common import GPU_ONLY, Row, Sizes, bench_config, bench_data, interleaved, median, median_ratio, sync
from workers.data import DataSplits, iterate_batches
from workers.methods import get_method
from workers.methods.base import run_attack
from workers.models import count_macs
from workers.trainer import Trainer, autocast

B1_FLOOR, B1_TARGET = 2 / 3, 0.75
B2_FLOOR, B2_TARGET = 23 / 3, 8.5
B4_TARGET = 0.55
ATTACK_STEPS = 10


def _trainer(sz: Sizes, method: str, *, device: torch.device, precision: str, data: DataSplits | None,
             data_root: str | None) -> Trainer:
    cfg = bench_config(sz, method=method, precision=precision, n_train=sz.batch * sz.steps, steps=ATTACK_STEPS,
                       real=data_root is not None)
    if data is None:
        data = bench_data(cfg, data_root=data_root, device=device)
    return Trainer(cfg, device=device, data_root=data_root, data=data)


def _one_batch(tr: Trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """The first augmented training batch (B, C, H, W), in the layout train_epoch gives the model."""
    d = tr.data
    gen = torch.Generator(device=d.train_x.device).manual_seed(0)
    x, y = next(iterate_batches(d.train_x, d.train_y, batch_size=tr.cfg.batch_size, shuffle=True, augment=True,
                                generator=gen, drop_last=True, flip=d.hflip))
    return x.contiguous(memory_format=tr._fast_layout()), y


def attack_step_ratio(sz: Sizes, *, device: torch.device, precision: str, data_root: str | None = None) -> Row:
    """B1: seconds of one PGD step (the training attack of train_epoch, run_attack in eval-mode BN, divided by its
    steps) / seconds of one clean training step (train_epoch's forward, backward, clip, SGD step), same model,
    batch and precision, timed in alternation."""
    tr = _trainer(sz, "sat", device=device, precision=precision, data=None, data_root=data_root)
    cfg, model, opt = tr.cfg, tr.model, tr.optimizer
    x, y = _one_batch(tr)
    clean = get_method("clean")
    model.train()

    def clean_step() -> None:
        with autocast(cfg, device):
            out = clean(model, x, y, tr.ctx)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

    def attack() -> None:
        with autocast(cfg, device):
            run_attack(model, x, y, tr.ctx)

    t = interleaved({"clean": clean_step, "attack": attack}, device=device, repeats=max(sz.repeats, 3) + 2)
    per_step = [a / ATTACK_STEPS for a in t["attack"]]
    return Row("B1", "attack step / clean step", median_ratio(per_step, t["clean"]), B1_TARGET, B1_FLOOR,
               better="lower", note=f"{cfg.arch} b{cfg.batch_size} {_precision(cfg, device)}: "
               f"{median(per_step) * 1e3:.0f} / {median(t['clean']) * 1e3:.0f} ms",
               extra={"attack_step_s": per_step, "clean_step_s": t["clean"]})


def epoch_ratio(sz: Sizes, *, device: torch.device, precision: str, data_root: str | None = None
                ) -> tuple[Row, dict[str, float]]:
    """B2: Trainer.train_epoch with method sat (PGD-10) / with method clean, same data, same init, timed in
    alternation (the same epoch index, so the same batches and crops). Also returns what B4 needs."""
    sat = _trainer(sz, "sat", device=device, precision=precision, data=None, data_root=data_root)
    clean = _trainer(sz, "clean", device=device, precision=precision, data=sat.data, data_root=data_root)
    t = interleaved({"clean": lambda: clean.train_epoch(0), "sat": lambda: sat.train_epoch(0)}, device=device,
                    repeats=sz.repeats)
    images = sz.steps * sz.batch
    info = {"sat_epoch_s": median(t["sat"]), "clean_epoch_s": median(t["clean"]), "images": images}
    row = Row("B2", "PGD-10 epoch / clean epoch", median_ratio(t["sat"], t["clean"]), B2_TARGET, B2_FLOOR,
              better="lower", note=f"{sat.cfg.arch} {images} img {_precision(sat.cfg, device)}: "
              f"{info['sat_epoch_s']:.2f} / {info['clean_epoch_s']:.2f} s",
              extra={"sat_epoch_s": t["sat"], "clean_epoch_s": t["clean"]})
    info["flops"] = 2 * count_macs(sat.model, (1, sat.data.channels, sat.data.image_size, sat.data.image_size))
    return row, info


def matmul_flops(device: torch.device, *, n: int = 8192, repeats: int = 20) -> float:
    """Measured bf16 matmul FLOP/s of an n x n x n product (the device's practical peak)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def useful_flops(info: dict[str, float] | None, *, device: torch.device) -> Row:
    """B4 (GPU): 23 x forward FLOPs (2 x MACs) x images/s of PGD-10 training (from B2's timed epochs) / bf16 matmul
    FLOP/s measured in the same run."""
    if device.type != "cuda" or info is None:
        return Row("B4", "useful FLOP/s / bf16 matmul", None, B4_TARGET, text=GPU_ONLY)
    images_per_s = info["images"] / info["sat_epoch_s"]
    useful = 23 * info["flops"] * images_per_s
    peak = matmul_flops(device)
    return Row("B4", "useful FLOP/s / bf16 matmul", useful / peak, B4_TARGET,
               note=f"{useful / 1e12:.1f} / {peak / 1e12:.1f} TFLOP/s, {images_per_s:.0f} img/s",
               extra={"useful_flops": useful, "matmul_flops": peak, "images_per_s": images_per_s})


def _precision(cfg: object, device: torch.device) -> str:
    p = getattr(cfg, "precision", "auto")
    return "bf16" if p == "bf16" or (p == "auto" and device.type == "cuda") else "fp32"
