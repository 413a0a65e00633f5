"""The sizes a plan needs of a dataset: classes (the network's head), channels, image size (its MACs and
activation memory) and images per split (its cost and the data held on the device).

Fixed datasets take them from search_spaces.catalog. An image-folder tree (`imagefolder`, `cifar10-jpeg`) is
measured under its data root without decoding it: the class directories of train/ (sorted, as the workers' loader
reads them), one image's header (PIL) and a count of the image files per split. Without a data root an image
folder has no sizes: `data_sizes` raises SpecError("data_root", ...) rather than planning invented ones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from search_spaces.catalog import DATASETS, DISK_DATASETS
from search_spaces.spec import SpecError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # as workers.data reads
DEFAULT_N_TEST = 10_000  # test images of the fixed datasets (CIFAR-10/100; SVHN has more, 10k are evaluated)


@dataclass(frozen=True)
class DataSizes:
    num_classes: int
    channels: int
    image_size: int  # pixels per side
    n_train: int  # images of the train split, before the validation split is carved out of it
    n_test: int  # images of the test split
    measured: bool  # True: read from the tree; False: the catalog's figures


def data_sizes(dataset: str, data_root: str | None = None) -> DataSizes:
    """Sizes of `dataset`; image folders are measured under `data_root` (required for them). Raises SpecError."""
    if dataset not in DATASETS:
        raise SpecError("dataset", f"unknown dataset {dataset!r}")
    info = DATASETS[dataset]
    if dataset not in DISK_DATASETS:
        return DataSizes(info["num_classes"], info["channels"], info["image_size"], info["n_train"],
                         DEFAULT_N_TEST, measured=False)
    if data_root is None:
        raise SpecError("data_root", f"dataset {dataset!r} is an image folder: its classes, image size and counts "
                                     f"are read from the tree, so set a data root")
    tree = _tree(dataset, Path(data_root).expanduser())
    return _measure(str(tree), info["channels"], _stamp(tree))


def _tree(dataset: str, root: Path) -> Path:
    """The tree holding train/ and test/: the root itself, or (cifar10-jpeg) a `cifar10-jpeg/` inside it."""
    nested = root / "cifar10-jpeg"
    if dataset == "cifar10-jpeg" and not (root / "train").is_dir() and nested.is_dir():
        root = nested
    if not ((root / "train").is_dir() and (root / "test").is_dir()):
        raise SpecError("data_root", f"{str(root)!r} has no train/ and test/ directories "
                                     f"(expected <split>/<class>/<image>)")
    return root.resolve()


def _images(class_dir: Path) -> list[Path]:
    return sorted(f for f in class_dir.iterdir() if f.suffix.lower() in IMG_EXTENSIONS)


def _classes(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _stamp(tree: Path) -> tuple[int, ...]:
    """Changes when a file is added to or removed from a class directory (their mtimes): the cache key."""
    dirs = [tree / "train", tree / "test"]
    return tuple(d.stat().st_mtime_ns for d in [*dirs, *(c for s in dirs for c in _classes(s))])


@functools.lru_cache(maxsize=32)
def _measure(root: str, channels: int, stamp: tuple[int, ...]) -> DataSizes:
    """One listing per class directory and one image header; cached per tree state (`stamp`)."""
    from PIL import Image

    tree = Path(root)
    train, test = _classes(tree / "train"), _classes(tree / "test")
    counts = {"train": [len(_images(d)) for d in train], "test": [len(_images(d)) for d in test]}
    first = next((f for d in train for f in _images(d)), None)
    if first is None or not sum(counts["test"]):
        split = "train" if first is None else "test"
        raise SpecError("data_root", f"no images under {root}/{split}/<class>/ (extensions {', '.join(IMG_EXTENSIONS)})")
    with Image.open(first) as im:
        width, height = im.size
    if width != height:
        raise SpecError("data_root", f"{first} is {width}x{height}: the networks take square images")
    return DataSizes(len(train), channels, height, sum(counts["train"]), sum(counts["test"]), measured=True)
