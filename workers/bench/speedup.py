"""B3: the workers' training loop against the reference loop of workers.bench.reference, same model (the same
initial weights), batch size, images, epochs and hyperparameters; epochs timed in alternation (ours, then the
reference's), then both models evaluated by the same PGD-20 (workers.evaluate, fp32, the same seed) on the same
test images."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch

from search_spaces.config import TrialConfig
from workers.bench import reference as ref
from workers.bench.common import Row, Sizes, bench_config, bench_data, median, sync
from workers.data import DataSplits
from workers.evaluate import evaluate
from workers.models import build_model
from workers.trainer import Trainer, eval_attack

TARGET = {"cpu": 3.0, "cuda": 5.0}
ACC_TOLERANCE = 0.5  # percentage points of PGD-20 robust accuracy


def speedup(sz: Sizes, *, device: torch.device, precision: str, data_root: str | None = None, seed: int = 0) -> Row:
    cfg = bench_config(sz, method="sat", precision=precision, n_train=sz.b3_train, n_test=sz.b3_test, seed=seed,
                       real=data_root is not None)
    data = bench_data(cfg, data_root=data_root, device=device, n_test=sz.b3_test)
    ours = Trainer(cfg, device=device, data_root=data_root, data=data)
    theirs = build_model(cfg.model, depths=cfg.depths, widths=cfg.widths, num_classes=data.num_classes,
                         mean=data.mean, std=data.std, in_channels=data.channels).to(device)
    theirs.load_state_dict(copy.deepcopy(ours.model.state_dict()))  # the same initial weights, NCHW
    a = cfg.train_attack
    settings = ref.RefSettings(epsilon=cfg.eps, alpha=a.resolved_step_size(cfg.eps, cfg.norm), attack_iters=a.steps, lr=cfg.lr,
                               momentum=cfg.momentum, weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip)
    opt = ref.make_sgd(theirs, settings)
    loader = ref.train_loader(data.train_x.cpu(), data.train_y.cpu(), batch_size=cfg.batch_size, seed=seed)
    t_ours, t_ref = [], []
    for epoch in range(sz.b3_epochs):
        sync(device)
        t_ours.append(_timed(lambda: ours.train_epoch(epoch), device))  # noqa: B023 (called at once)
        torch.manual_seed(seed * 1000 + epoch)
        t_ref.append(ref.train_epoch(theirs, loader, opt, settings, device)["seconds"])
    acc_ours = _pgd20(ours.model, cfg, data, seed)
    acc_ref = _pgd20(theirs, cfg, data, seed)
    ratios = [r / o for r, o in zip(t_ref, t_ours, strict=True)]
    diff = 100 * (acc_ours - acc_ref)
    within = abs(round(diff, 6)) <= ACC_TOLERANCE  # counts differ by whole examples: no float noise
    n_test = len(data.test_y)
    se = 100 * (2 * max(acc_ref * (1 - acc_ref), 1e-4) / n_test) ** 0.5  # s.e. of a difference of two accuracies
    note = (f"{cfg.arch} b{cfg.batch_size} {len(data.train_y)} img x {sz.b3_epochs} ep: {median(t_ref):.1f} / "
            f"{median(t_ours):.1f} s/epoch; PGD-20 ours {100 * acc_ours:.1f}% ref {100 * acc_ref:.1f}% "
            f"(diff {diff:+.1f} pt, {'within' if within else 'NOT within'} {ACC_TOLERANCE} pt; "
            f"s.e. {se:.1f} pt on {n_test} test img)")
    return Row("B3", "speedup over reference loop", median(ratios), TARGET.get(device.type, 3.0), unit="x",
               note=note, extra={"ref_epoch_s": t_ref, "ours_epoch_s": t_ours, "pgd20_ours": acc_ours,
                                 "pgd20_ref": acc_ref, "acc_diff_points": diff, "acc_within": within})


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def _pgd20(model: torch.nn.Module, cfg: TrialConfig, data: DataSplits, seed: int) -> float:
    """PGD-20 robust accuracy on data.test_x in fp32 (no autocast), random starts seeded by `seed`."""
    torch.manual_seed(seed)
    m = evaluate(model, data.test_x, data.test_y, attack=eval_attack(cfg), batch_size=512)
    return float(m["robust_acc"])
