"""The registered datasets. Each source decodes a whole dataset into uint8 CPU tensors (`RawData`); the disk cache
in `cache.py` makes that happen once per (dataset, root).

- `cifar10`, `cifar100`, `svhn`: torchvision, downloaded into data_root when missing and online.
  SVHN is digits: a mirrored 2 is not a 2, so SVHN registers `hflip=False` (pad-crop only).
- `cifar10-jpeg`: the CIFAR-10 JPEG ImageFolder tree (a lossy re-encoding; never report it as `cifar10`).
- `imagefolder`: any tree data_root/{train,test}/<class>/<image>; provenance `imagefolder:<dirname>`.
- `synthetic`: deterministic, learnable 10-class 3x32x32 images generated in memory, for fast tests.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from workers.data.registry import RawData, register_dataset

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
DECODE_CHUNK = 1024  # images per thread-pool task


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not under data_root and could not be downloaded (offline)."""


# --------------------------------------------------------------------------------------------------- torchvision


def _open_torchvision(factory: Callable[..., Any], name: str, root: Path, **kwargs: Any) -> Any:
    """The torchvision dataset under `root`, downloading it when its files are missing (needs network)."""
    try:
        return factory(root=str(root), download=False, **kwargs)
    except RuntimeError:  # "Dataset not found or corrupted": try to download it
        pass
    try:
        return factory(root=str(root), download=True, **kwargs)
    except Exception as exc:  # URLError, socket errors, checksum failures
        raise DatasetNotFoundError(
            f"dataset '{name}' is not under data_root '{root}' and downloading it failed ({exc!r}); "
            f"download it there once with network access, or point data_root at a copy"
        ) from exc


def _hwc_to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) -> (N, C, H, W)


def _cifar(factory: Callable[..., Any], name: str, root: Path) -> RawData:
    tr = _open_torchvision(factory, name, root, train=True)
    te = _open_torchvision(factory, name, root, train=False)
    return RawData(
        train_x=_hwc_to_tensor(tr.data),
        train_y=torch.as_tensor(tr.targets, dtype=torch.int64),
        test_x=_hwc_to_tensor(te.data),
        test_y=torch.as_tensor(te.targets, dtype=torch.int64),
        classes=tuple(tr.classes),
    )


@register_dataset("cifar10", num_classes=10, channels=3, image_size=32)
def cifar10(root: Path, **_: Any) -> RawData:
    from torchvision.datasets import CIFAR10

    return _cifar(CIFAR10, "cifar10", root)


@register_dataset("cifar100", num_classes=100, channels=3, image_size=32)
def cifar100(root: Path, **_: Any) -> RawData:
    from torchvision.datasets import CIFAR100

    return _cifar(CIFAR100, "cifar100", root)


@register_dataset("svhn", num_classes=10, channels=3, image_size=32, hflip=False)
def svhn(root: Path, **_: Any) -> RawData:
    """SVHN 'train' (73,257) and 'test' (26,032); the 'extra' split is not used. Labels 0-9 (torchvision maps
    the digit 0 from label 10 to 0)."""
    from torchvision.datasets import SVHN

    try:
        import scipy.io  # noqa: F401  (torchvision reads SVHN's .mat files with it)
    except ImportError as exc:
        raise ImportError("dataset 'svhn' needs scipy (torchvision reads its .mat files with scipy.io)") from exc
    tr = _open_torchvision(SVHN, "svhn", root, split="train")
    te = _open_torchvision(SVHN, "svhn", root, split="test")
    return RawData(
        train_x=torch.from_numpy(np.ascontiguousarray(tr.data)),  # already (N, C, H, W)
        train_y=torch.as_tensor(tr.labels, dtype=torch.int64),
        test_x=torch.from_numpy(np.ascontiguousarray(te.data)),
        test_y=torch.as_tensor(te.labels, dtype=torch.int64),
        classes=tuple(str(d) for d in range(10)),
    )


# --------------------------------------------------------------------------------------------------- image folders


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(split_dir: Path, classes: Sequence[str] | None) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """Image paths (sorted by class, then file name), labels, and class names (sorted unless given)."""
    dirs = _class_dirs(split_dir)
    names = tuple(d.name for d in dirs) if classes is None else tuple(classes)
    index = {c: i for i, c in enumerate(names)}
    paths: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        if d.name not in index:
            raise ValueError(f"class '{d.name}' in {split_dir} is not a class of the train split")
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMG_EXTENSIONS)
        paths += files
        labels += [index[d.name]] * len(files)
    if not paths:
        raise ValueError(f"no images under {split_dir}/<class>/ (extensions {', '.join(IMG_EXTENSIONS)})")
    return paths, labels, names


def _read_rgb(path: Path) -> torch.Tensor:
    """Any image PIL reads -> (3, H, W) uint8."""
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)


def _batched_jpeg_decoder() -> Callable[..., list[torch.Tensor]] | None:
    """torchvision's batched libjpeg-turbo decoder (deprecated in torchvision 0.29 for TorchCodec; None once gone)."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return None
    return functools.partial(decode_jpeg, mode=ImageReadMode.RGB)


def _decode_chunk(paths: Sequence[Path]) -> list[torch.Tensor]:
    """JPEGs in one batched torchvision call (3x faster than PIL here, identical pixels), anything else with PIL."""
    decode_jpeg = _batched_jpeg_decoder()
    if decode_jpeg is not None and all(p.suffix.lower() in (".jpg", ".jpeg") for p in paths):
        try:
            return list(decode_jpeg([torch.from_numpy(np.fromfile(p, dtype=np.uint8)) for p in paths]))
        except RuntimeError:  # e.g. a PNG named .jpg: PIL sniffs the format
            pass
    return [_read_rgb(p) for p in paths]


def decode_images(paths: Sequence[Path], *, threads: int | None = None) -> torch.Tensor:
    """Decode same-sized images, in chunks on a thread pool. Returns (N, 3, H, W) uint8.
    Raises ValueError naming the first image whose size differs from the first one's."""
    chunks = [paths[i : i + DECODE_CHUNK] for i in range(0, len(paths), DECODE_CHUNK)]
    threads = threads or min(16, 2 * (os.cpu_count() or 1))  # file reads overlap decoding
    out: torch.Tensor | None = None
    with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=threads) as pool:
        warnings.filterwarnings("ignore", "The image decoding and encoding capabilities", DeprecationWarning)
        for c, imgs in enumerate(pool.map(_decode_chunk, chunks)):
            if out is None:
                out = torch.empty((len(paths), *imgs[0].shape), dtype=torch.uint8)
            for j, im in enumerate(imgs):
                if im.shape != out.shape[1:]:
                    bad = paths[c * DECODE_CHUNK + j]
                    raise ValueError(f"{bad} is {im.shape[2]}x{im.shape[1]}, not {out.shape[3]}x{out.shape[2]}")
            out[c * DECODE_CHUNK : c * DECODE_CHUNK + len(imgs)] = torch.stack(imgs)
    assert out is not None
    return out


def _load_image_folder(root: Path, classes: Sequence[str] | None = None) -> RawData:
    tr_paths, tr_y, names = _scan(root / "train", classes)
    te_paths, te_y, _ = _scan(root / "test", names)
    return RawData(
        train_x=decode_images(tr_paths),
        train_y=torch.tensor(tr_y, dtype=torch.int64),
        test_x=decode_images(te_paths),
        test_y=torch.tensor(te_y, dtype=torch.int64),
        classes=names,
    )


def _tree_root(root: Path) -> Path:
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root
    raise ValueError(f"data_root: '{root}' has no train/ and test/ directories (expected <split>/<class>/<image>)")


def _jpeg_root(root: Path) -> Path:
    """Accept the tree itself or a parent holding `cifar10-jpeg/`."""
    nested = root / "cifar10-jpeg"
    return _tree_root(nested if not (root / "train").is_dir() and nested.is_dir() else root)


def tree_fingerprint(root: Path) -> str:
    """Changes when images are added to or removed from a class directory (directory mtimes), cheap to compute."""
    dirs = [root / s for s in ("train", "test")]
    dirs += [c for d in dirs for c in _class_dirs(d)]
    return ";".join(f"{d.relative_to(root)}:{d.stat().st_mtime_ns}" for d in dirs)


def probe_image_folder(root: Path) -> dict[str, int]:
    """Class count and image size of a tree from one listing and one image header."""
    dirs = _class_dirs(root / "train")
    first = next((f for d in dirs for f in sorted(d.iterdir()) if f.suffix.lower() in IMG_EXTENSIONS), None)
    if first is None:
        raise ValueError(f"no images under {root}/train/<class>/")
    with Image.open(first) as im:
        return {"num_classes": len(dirs), "image_size": im.height}


@register_dataset(
    "cifar10-jpeg", num_classes=10, channels=3, image_size=32, resolve_root=_jpeg_root, fingerprint=tree_fingerprint
)
def cifar10_jpeg(root: Path, **_: Any) -> RawData:
    """The CIFAR-10 images as JPEG files (quality ~75); classes airplane..truck = CIFAR-10 label order."""
    found = tuple(d.name for d in _class_dirs(root / "train"))
    if found != CIFAR10_CLASSES:
        raise ValueError(f"{root}/train has classes {found}, not the CIFAR-10 classes {CIFAR10_CLASSES}")
    return _load_image_folder(root, CIFAR10_CLASSES)


@register_dataset(
    "imagefolder",
    num_classes=None,
    channels=3,
    image_size=None,
    resolve_root=_tree_root,
    provenance=lambda root: f"imagefolder:{root.name if root else ''}",
    fingerprint=tree_fingerprint,
)
def imagefolder(root: Path, **_: Any) -> RawData:
    """Any tree root/train/<class>/<image>, root/test/<class>/<image>: classes sorted by name (test classes must
    be train classes), images converted to RGB and all of one size."""
    return _load_image_folder(root)


# --------------------------------------------------------------------------------------------------- synthetic


def make_synthetic(
    n_train: int = 2560,
    n_test: int = 512,
    *,
    num_classes: int = 10,
    image_size: int = 32,
    noise: float = 0.15,  # pixel noise std, [0, 1] units
    seed: int = 0,  # fixed data seed, independent of the trial seed
) -> RawData:
    """Deterministic learnable images: class k has its own hue and a sinusoidal grating at angle k*pi/K, plus a
    random phase, a random brightness shift and Gaussian pixel noise per image. Labels exactly balanced."""
    k = torch.arange(num_classes, dtype=torch.float32)
    hue = 2 * math.pi * k / num_classes
    palette = torch.stack([0.5 + 0.3 * torch.cos(hue - s * 2 * math.pi / 3) for s in range(3)], 1)  # (K, 3)
    angle = math.pi * k / num_classes  # (K,)
    coords = torch.arange(image_size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (H, W)

    def split(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]  # (n,) balanced
        phase = 2 * math.pi * torch.rand(n, 1, 1, generator=g, dtype=torch.float32)
        proj = xx * torch.cos(angle[y])[:, None, None] + yy * torch.sin(angle[y])[:, None, None]  # (n, H, W)
        grating = 0.2 * torch.sin(2 * math.pi * proj / 8 + phase)  # period 8 px
        shift = 0.05 * torch.randn(n, 1, 1, 1, generator=g, dtype=torch.float32)
        x = palette[y][:, :, None, None] + grating[:, None] + shift  # (n, 3, H, W)
        x = x + noise * torch.randn(x.shape, generator=g, dtype=torch.float32)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y.to(torch.int64)

    train_x, train_y = split(n_train, torch.Generator().manual_seed(seed))
    test_x, test_y = split(n_test, torch.Generator().manual_seed(seed + 1))
    return RawData(train_x, train_y, test_x, test_y, classes=tuple(f"class{i}" for i in range(num_classes)))


@register_dataset("synthetic", num_classes=10, channels=3, image_size=32, needs_root=False, cached=False)
def synthetic(
    root: Path | None = None, *, n_train: int = 2560, n_test: int = 512, noise: float = 0.15, seed: int = 0
) -> RawData:
    """Options via load_splits(..., source_options={...}): n_train, n_test, noise, seed (the data seed)."""
    return make_synthetic(n_train, n_test, noise=noise, seed=seed)
