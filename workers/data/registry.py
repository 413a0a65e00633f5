"""Dataset registry: a source is a function registered by decorator and looked up by name (timm style).

A source decodes one dataset into a `RawData` (whole train and test splits as uint8 tensors on the CPU);
caching, val/test carving, subsetting and device placement live elsewhere (`cache.py`, `splits.py`).

    @register_dataset("cifar10", num_classes=10, channels=3, image_size=32)
    def cifar10(root: Path, **options) -> RawData: ...
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor


@dataclass
class RawData:
    """One decoded dataset, both splits whole, on the CPU. What the disk cache stores."""

    train_x: Tensor = field(repr=False)  # (N, C, H, W) uint8
    train_y: Tensor = field(repr=False)  # (N,) int64
    test_x: Tensor = field(repr=False)  # (M, C, H, W) uint8
    test_y: Tensor = field(repr=False)  # (M,) int64
    classes: tuple[str, ...]  # class names in label order


Loader = Callable[..., RawData]  # (root: Path | None, **options) -> RawData


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset. `hflip=False` for data whose meaning changes under mirroring (digits)."""

    name: str
    loader: Loader
    num_classes: int | None  # None: known only from the tree (imagefolder)
    channels: int
    image_size: int | None  # None: known only from the files (imagefolder)
    hflip: bool = True  # random horizontal flip is a valid augmentation
    needs_root: bool = True  # False: generated in memory (synthetic)
    cached: bool = True  # decoded tensors are cached on disk
    resolve_root: Callable[[Path], Path] | None = None  # maps the given data_root to the dataset's own root
    provenance: Callable[[Path | None], str] | None = None  # name written with results; None: `name`
    fingerprint: Callable[[Path], str] | None = None  # changes when the files change (part of the cache key)

    def root_for(self, data_root: str | os.PathLike[str] | None) -> Path | None:
        """The resolved dataset root (`None` for sources that need none). Raises ValueError for a bad root."""
        if not self.needs_root:
            return None
        if data_root is None:  # passed in by the caller (the run context's data root); never read from the environment
            raise ValueError(f"data_root: dataset '{self.name}' needs a data root (--data-root or the service's "
                             f"data_root setting)")
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise ValueError(f"data_root: '{data_root}' does not exist")
        root = root.resolve()
        return self.resolve_root(root) if self.resolve_root else root

    def provenance_name(self, root: Path | None) -> str:
        return self.provenance(root) if self.provenance else self.name


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(name: str, **spec: Any) -> Callable[[Loader], Loader]:
    """Decorator: register `fn` as the loader of dataset `name` (keyword arguments: DatasetSpec fields)."""

    def deco(fn: Loader) -> Loader:
        if name in _REGISTRY:
            raise ValueError(f"dataset '{name}' is already registered")
        _REGISTRY[name] = DatasetSpec(name=name, loader=fn, **spec)
        return fn

    return deco


def get_dataset(name: str) -> DatasetSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset '{name}'; known: {', '.join(list_datasets())}") from None


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def dataset_info(name: str, *, data_root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """`num_classes`, `channels`, `image_size` (and `hflip`) without decoding anything.

    For `imagefolder` the class count and image size come from the tree (one directory listing and one image
    header), so they are None unless `data_root` is given."""
    spec = get_dataset(name)
    info: dict[str, Any] = {
        "num_classes": spec.num_classes,
        "channels": spec.channels,
        "image_size": spec.image_size,
        "hflip": spec.hflip,
    }
    if (spec.num_classes is None or spec.image_size is None) and data_root is not None:
        from workers.data.sources import probe_image_folder  # local: sources imports this module

        root = spec.root_for(data_root)
        assert root is not None
        info.update(probe_image_folder(root))
    return info
