"""Datasets for trials: decoded once to uint8 tensors (cached on disk), held on the device, augmented there.

    splits = load_splits(cfg, data_root=root, device=device)        # DataSplits, uint8 on device
    for x, y in iterate_batches(splits.train_x, splits.train_y, batch_size=cfg.batch_size, shuffle=True,
                                augment=True, generator=g, drop_last=True, flip=splits.hflip):
        ...                                                          # x float32 in [0, 1] (B, C, H, W)
"""

from workers.data import sources as _sources  # noqa: F401  (registers the datasets)
from workers.data.augment import augment_batch, iterate_batches
from workers.data.registry import DatasetSpec, RawData, dataset_info, get_dataset, list_datasets, register_dataset
from workers.data.sources import DatasetNotFoundError, make_synthetic
from workers.data.splits import DataSplits, load_splits

__all__ = [
    "DataSplits",
    "DatasetNotFoundError",
    "DatasetSpec",
    "RawData",
    "augment_batch",
    "dataset_info",
    "get_dataset",
    "iterate_batches",
    "list_datasets",
    "load_splits",
    "make_synthetic",
    "register_dataset",
]
