"""From a decoded dataset to the tensors one trial uses: a fixed validation split carved out of train, a seeded
class-balanced training subset, a fixed class-balanced test prefix, all moved to the trial's device.

Seeds: the val split and the test order use fixed seeds (the same for every trial, so results of different seeds
are evaluated on the same images); only the `n_train` subset depends on `cfg.seed`. All selections are prefixes of
a class-interleaved order, so they are nested: n_train=100 is a subset of n_train=200 for the same seed, and the
first k of `test_x` are as class-balanced as k allows.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from search_spaces.config import TrialConfig
from workers.data.cache import load_decoded
from workers.data.registry import get_dataset

log = logging.getLogger(__name__)

VAL_SEED = 20240601  # fixed seed of the train/val split, independent of the trial seed
TEST_SEED = 20240602  # fixed seed of the test order behind `n_test`


@dataclass
class DataSplits:
    """One trial's data on its device. Images are uint8 (normalisation lives in the model); labels int64."""

    train_x: Tensor = field(repr=False)  # (N, C, H, W) uint8
    train_y: Tensor = field(repr=False)  # (N,) int64
    val_x: Tensor = field(repr=False)  # (cfg.val_size, C, H, W) uint8, held out from train with VAL_SEED
    val_y: Tensor = field(repr=False)
    test_x: Tensor = field(repr=False)  # (cfg.n_test or all, C, H, W) uint8
    test_y: Tensor = field(repr=False)
    num_classes: int
    mean: tuple[float, ...]  # per channel, [0, 1] units, of the full train split (before any carving)
    std: tuple[float, ...]
    name: str  # provenance: cifar10 | cifar10-jpeg | cifar100 | svhn | imagefolder:<dirname> | synthetic
    image_size: int  # px (height; every registered dataset is square)
    channels: int
    classes: tuple[str, ...] = ()  # class names in label order
    hflip: bool = True  # horizontal flips are valid augmentation (False for SVHN): iterate_batches(flip=...)
    train_idx: Tensor | None = field(default=None, repr=False)  # (N,) CPU int64 indices into the full train split
    val_idx: Tensor | None = field(default=None, repr=False)  # (val_size,) indices into the full train split
    test_idx: Tensor | None = field(default=None, repr=False)  # indices into the full test split
    cache_file: str | None = None  # the decoded-tensor cache this came from (None: generated)


def balanced_order(y: Tensor, generator: torch.Generator) -> Tensor:
    """A permutation of range(len(y)) whose every prefix is as class-balanced as possible: one random example of
    each class (classes in a random but fixed order), then a second of each, and so on; a class that runs out is
    skipped."""
    n = y.numel()
    perm = torch.randperm(n, generator=generator)
    ys = y[perm]
    num_classes = int(ys.max()) + 1 if n else 0
    by_class = torch.sort(ys, stable=True).indices  # positions in perm, grouped by class
    counts = torch.bincount(ys, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.int64)
    rank[by_class] = torch.arange(n) - starts[ys[by_class]]  # rank of each example within its class
    class_slot = torch.randperm(num_classes, generator=generator)  # tie-break between classes of equal rank
    return perm[torch.argsort(rank * num_classes + class_slot[ys])]


def split_indices(
    train_y: Tensor, test_y: Tensor, *, val_size: int, n_train: int | None, n_test: int | None, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(train_idx, val_idx, test_idx): train_idx sorted, val/test in balanced order. See the module docstring."""
    n = train_y.numel()
    if val_size >= n:
        raise ValueError(f"val_size={val_size} leaves no training images (the train split has {n})")
    order = balanced_order(train_y, torch.Generator().manual_seed(VAL_SEED))
    val_idx, pool = order[:val_size], order[val_size:].sort().values
    if n_train is None:
        train_idx = pool
    elif n_train > pool.numel():
        raise ValueError(f"n_train={n_train} exceeds the {pool.numel()} training images left after val_size={val_size}")
    else:
        pick = balanced_order(train_y[pool], torch.Generator().manual_seed(seed))[:n_train]
        train_idx = pool[pick].sort().values
    m = test_y.numel()
    if n_test is None or n_test >= m:
        test_idx = torch.arange(m)
    else:
        test_idx = balanced_order(test_y, torch.Generator().manual_seed(TEST_SEED))[:n_test]
    return train_idx, val_idx, test_idx


def load_splits(
    cfg: TrialConfig,
    *,
    data_root: str | os.PathLike[str] | None,
    device: torch.device | str,
    cache_dir: str | os.PathLike[str] | None = None,
    source_options: dict[str, Any] | None = None,
) -> DataSplits:
    """Decode (or load from the cache) `cfg.dataset`, carve val/train/test and move them to `device`.

    data_root: where the dataset lives (None only for datasets that need none: `synthetic`). source_options go to the source (for
    `synthetic`: n_train, n_test, noise, seed) and are part of the cache key. Raises ValueError for an unknown
    dataset or a missing data_root, DatasetNotFoundError when files are missing and cannot be downloaded."""
    spec = get_dataset(cfg.dataset)
    root = spec.root_for(data_root)
    d = load_decoded(spec, root, cache_dir=cache_dir, options=source_options)
    raw = d.raw
    train_idx, val_idx, test_idx = split_indices(
        raw.train_y, raw.test_y, val_size=cfg.val_size, n_train=cfg.n_train, n_test=cfg.n_test, seed=cfg.seed
    )
    dev = torch.device(device)

    def take(x: Tensor, idx: Tensor) -> Tensor:
        return x[idx].to(dev)

    splits = DataSplits(
        train_x=take(raw.train_x, train_idx),
        train_y=take(raw.train_y, train_idx),
        val_x=take(raw.train_x, val_idx),
        val_y=take(raw.train_y, val_idx),
        test_x=take(raw.test_x, test_idx),
        test_y=take(raw.test_y, test_idx),
        num_classes=len(raw.classes),
        mean=d.mean,
        std=d.std,
        name=spec.provenance_name(root),
        image_size=int(raw.train_x.shape[2]),
        channels=int(raw.train_x.shape[1]),
        classes=raw.classes,
        hflip=spec.hflip,
        train_idx=train_idx,
        val_idx=val_idx,
        test_idx=test_idx,
        cache_file=str(d.cache_file) if d.cache_file else None,
    )
    log.info(
        "%s: train %d, val %d, test %d on %s",
        splits.name, len(splits.train_y), len(splits.val_y), len(splits.test_y), dev,
    )  # fmt: skip
    return splits
