"""workers.data: registry, splits, augmentation, batching, the disk cache, errors; one test on the real images."""

from __future__ import annotations

import os
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import workers.data.cache as cache_mod
from search_spaces.config import TrialConfig
from workers.data import (
    DatasetNotFoundError,
    augment_batch,
    dataset_info,
    iterate_batches,
    list_datasets,
    load_splits,
)
from workers.data.sources import CIFAR10_CLASSES, _cifar, _open_torchvision
from workers.data.splits import balanced_order

CPU = torch.device("cpu")


def synth(**kw: object) -> TrialConfig:
    return TrialConfig(dataset="synthetic", **{"val_size": 256, **kw})


def write_tree(root: Path, classes: list[str], n_train: int, n_test: int, size: int = 8, ext: str = ".png") -> dict:
    """A tiny ImageFolder tree of random images; returns {(split, class, i): array (H, W, 3)}."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(a).save(root / split / c / f"{i:04d}{ext}")
                arrays[split, c, i] = a
    return arrays


# --------------------------------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", list_datasets())
def test_dataset_info_of_every_registered_dataset(name: str) -> None:
    info = dataset_info(name)
    assert info["channels"] == 3
    if name != "imagefolder":
        assert info["image_size"] == 32 and info["num_classes"] in (10, 100)
    assert info["hflip"] is (name != "svhn")  # a mirrored digit is another digit


def test_registry_contents_and_unknown_dataset() -> None:
    assert set(list_datasets()) >= {"cifar10", "cifar10-jpeg", "cifar100", "svhn", "imagefolder", "synthetic"}
    assert dataset_info("cifar100")["num_classes"] == 100
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; known: cifar10, cifar10-jpeg"):
        load_splits(TrialConfig(dataset="nope"), data_root=None, device=CPU)


def test_bad_data_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^data_root: '/no/such/dir' does not exist$"):
        load_splits(TrialConfig(dataset="cifar10"), data_root="/no/such/dir", device=CPU)
    with pytest.raises(ValueError, match="no train/ and test/"):
        load_splits(TrialConfig(dataset="imagefolder"), data_root=tmp_path, device=CPU)


def test_torchvision_missing_offline_names_the_root(tmp_path: Path) -> None:
    calls = []

    def fake_dataset(root: str, download: bool, train: bool) -> None:
        calls.append(download)
        if download:
            raise urllib.error.URLError("no network")
        raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")

    with pytest.raises(DatasetNotFoundError, match=f"not under data_root '{tmp_path}'.*downloading it failed"):
        _open_torchvision(fake_dataset, "cifar10", tmp_path, train=True)
    assert calls == [False, True]  # looked first, then tried to download


def test_torchvision_arrays_become_nchw_tensors(tmp_path: Path) -> None:
    class FakeCifar:  # what torchvision's CIFAR10/100 expose: data (N, H, W, C) uint8, targets list, classes
        def __init__(self, root: str, download: bool, train: bool) -> None:
            n = 6 if train else 2
            self.data = np.arange(n * 32 * 32 * 3, dtype=np.int64).reshape(n, 32, 32, 3).astype(np.uint8)
            self.targets, self.classes = [i % 2 for i in range(n)], ["x", "y"]

    raw = _cifar(FakeCifar, "cifar10", tmp_path)
    assert raw.train_x.shape == (6, 3, 32, 32) and raw.test_x.shape == (2, 3, 32, 32)
    assert torch.equal(raw.train_x[1, 2], torch.from_numpy(FakeCifar(".", False, True).data[1, :, :, 2]))
    assert raw.train_y.dtype == torch.int64 and raw.classes == ("x", "y")


# --------------------------------------------------------------------------------------------------- splits


def test_synthetic_splits_sizes_dtypes_device() -> None:
    s = load_splits(synth(), data_root=None, device=CPU)
    assert (s.train_x.shape, s.val_x.shape, s.test_x.shape) == ((2304, 3, 32, 32), (256, 3, 32, 32), (512, 3, 32, 32))
    assert s.train_x.dtype == s.val_x.dtype == s.test_x.dtype == torch.uint8
    assert s.train_y.dtype == s.val_y.dtype == s.test_y.dtype == torch.int64
    assert all(t.device == CPU for t in (s.train_x, s.train_y, s.val_x, s.val_y, s.test_x, s.test_y))
    assert (s.name, s.num_classes, s.channels, s.image_size, s.hflip) == ("synthetic", 10, 3, 32, True)
    assert torch.bincount(s.test_y).tolist() == [512 // 10 + (i < 2) for i in range(10)]  # all test, balanced
    assert all(0.3 < m < 0.7 for m in s.mean) and all(0.1 < sd < 0.4 for sd in s.std)
    # the stats are those of the full train split (train + val), in [0, 1] units
    full = torch.cat([s.train_x, s.val_x]).double() / 255
    assert torch.allclose(torch.tensor(s.mean, dtype=torch.float64), full.mean((0, 2, 3)), atol=1e-9)
    assert torch.allclose(torch.tensor(s.std, dtype=torch.float64), full.std((0, 2, 3), unbiased=False), atol=1e-9)


def test_synthetic_is_deterministic_and_sizes_overridable() -> None:
    a = load_splits(synth(val_size=0, select_on="last"), data_root=None, device=CPU, source_options={"n_train": 300, "n_test": 40})
    b = load_splits(synth(val_size=0, select_on="last"), data_root=None, device=CPU, source_options={"n_train": 300, "n_test": 40})
    assert (len(a.train_y), len(a.val_y), len(a.test_y)) == (300, 0, 40)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)


def test_val_split_fixed_across_seeds_and_disjoint_from_train() -> None:
    a = load_splits(synth(seed=0), data_root=None, device=CPU)
    b = load_splits(synth(seed=7, n_train=500), data_root=None, device=CPU)
    assert torch.equal(a.val_idx, b.val_idx) and torch.equal(a.val_x, b.val_x)
    assert len(a.val_idx) == 256 and sorted(torch.bincount(a.val_y).tolist()) == [25] * 4 + [26] * 6
    for s in (a, b):
        assert not set(s.train_idx.tolist()) & set(s.val_idx.tolist())
    assert sorted(a.train_idx.tolist() + a.val_idx.tolist()) == list(range(2560))  # n_train=None: all the rest


def test_n_train_class_balanced_seeded_and_nested() -> None:
    s0 = load_splits(synth(n_train=100, seed=0), data_root=None, device=CPU)
    s0b = load_splits(synth(n_train=100, seed=0), data_root=None, device=CPU)
    s1 = load_splits(synth(n_train=100, seed=1), data_root=None, device=CPU)
    s200 = load_splits(synth(n_train=200, seed=0), data_root=None, device=CPU)
    assert torch.bincount(s0.train_y, minlength=10).tolist() == [10] * 10
    assert torch.bincount(s200.train_y, minlength=10).tolist() == [20] * 10
    assert torch.equal(s0.train_idx, s0b.train_idx) and torch.equal(s0.train_x, s0b.train_x)
    assert len(set(s0.train_idx.tolist()) & set(s1.train_idx.tolist())) < 50  # another seed, another subset
    assert set(s0.train_idx.tolist()) <= set(s200.train_idx.tolist())


def test_n_test_is_a_fixed_balanced_prefix() -> None:
    a = load_splits(synth(n_test=50, seed=0), data_root=None, device=CPU)
    b = load_splits(synth(n_test=50, seed=3), data_root=None, device=CPU)
    full = load_splits(synth(), data_root=None, device=CPU)
    assert torch.bincount(a.test_y).tolist() == [5] * 10
    assert torch.equal(a.test_idx, b.test_idx)
    assert torch.equal(a.test_x, full.test_x[a.test_idx])


def test_balanced_order_prefixes_with_unequal_classes() -> None:
    y = torch.tensor([0] * 50 + [1] * 5 + [2] * 20)
    order = balanced_order(y, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(75))
    assert torch.bincount(y[order[:15]]).tolist() == [5, 5, 5]
    assert torch.bincount(y[order[:39]], minlength=3).tolist() == [17, 5, 17]  # class 1 runs out after 5


def test_split_size_errors() -> None:
    with pytest.raises(ValueError, match="n_train=2400 exceeds the 2304 training images left after val_size=256"):
        load_splits(synth(n_train=2400), data_root=None, device=CPU)
    with pytest.raises(ValueError, match="val_size=2560 leaves no training images"):
        load_splits(synth(val_size=2560), data_root=None, device=CPU)


# --------------------------------------------------------------------------------------------------- augmentation


def crop_of(out: torch.Tensor, x: torch.Tensor, pad: int = 4) -> set[tuple[int, int, bool]]:
    """All (dy, dx, mirrored) such that `out` is that window of the zero-padded `x` (C, H, W)."""
    p = torch.nn.functional.pad(x, (pad,) * 4)
    h, w = x.shape[1:]
    found = set()
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            win = p[:, dy : dy + h, dx : dx + w]
            found |= {(dy, dx, m) for m, v in ((False, win), (True, win.flip(-1))) if torch.equal(out, v)}
    return found


@pytest.mark.parametrize("flip", [True, False])
def test_augment_is_a_crop_and_flip_of_the_padded_input(flip: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32, generator=g)  # (B, C, H, W) float in [0, 1]
    out = augment_batch(x, torch.Generator().manual_seed(1), flip=flip)
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    seen = [crop_of(out[i], x[i]) for i in range(len(x))]
    assert all(len(s) == 1 for s in seen)  # every output is exactly one window of the padded image
    params = [next(iter(s)) for s in seen]
    assert any(m for *_, m in params) is flip and (not flip or not all(m for *_, m in params))
    assert len({(dy, dx) for dy, dx, _ in params}) > 20  # many of the 81 offsets used
    # a known window: compare to the corresponding slice directly
    dy, dx, m = params[0]
    expected = torch.nn.functional.pad(x[0], (4,) * 4)[:, dy : dy + 32, dx : dx + 32]
    assert torch.equal(out[0], expected.flip(-1) if m else expected)


def test_augment_uint8_random_across_batches_and_seeded() -> None:
    x = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    g = torch.Generator().manual_seed(5)
    a, b = augment_batch(x, g), augment_batch(x, g)
    assert a.dtype == torch.uint8 and not torch.equal(a, b)
    assert torch.equal(a, augment_batch(x, torch.Generator().manual_seed(5)))


# --------------------------------------------------------------------------------------------------- batching


@pytest.mark.parametrize("augment", [False, True])
def test_iterate_batches_covers_every_example_once(augment: bool) -> None:
    n = 1000
    x = (torch.arange(n) % 256).to(torch.uint8)[:, None, None, None].expand(n, 3, 32, 32).contiguous()
    y = torch.arange(n)  # the example's id
    g = torch.Generator().manual_seed(0)
    kw = dict(batch_size=128, shuffle=True, augment=augment, generator=g)
    batches = list(iterate_batches(x, y, drop_last=False, **kw))
    ids = torch.cat([yb for _, yb in batches])
    assert [len(yb) for _, yb in batches] == [128] * 7 + [104]
    assert sorted(ids.tolist()) == list(range(n)) and not torch.equal(ids, y)  # each once, shuffled
    for xb, yb in batches:
        assert xb.dtype == torch.float32 and xb.shape[1:] == (3, 32, 32) and 0 <= xb.min() and xb.max() <= 1
        assert torch.equal(xb[:, 0, 16, 16], (yb % 256).float() / 255)  # the centre survives any crop
    second = torch.cat([yb for _, yb in iterate_batches(x, y, drop_last=False, **kw)])
    assert not torch.equal(ids, second)  # a new order every epoch
    dropped = list(iterate_batches(x, y, drop_last=True, **kw))
    assert len(dropped) == 7 and all(len(yb) == 128 for _, yb in dropped)
    ordered = torch.cat([yb for _, yb in iterate_batches(x, y, batch_size=300, shuffle=False, augment=False,
                                                         generator=None, drop_last=False)])  # fmt: skip
    assert torch.equal(ordered, y)


# --------------------------------------------------------------------------------------------------- cache


def test_imagefolder_decode_and_cache_written_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tiny"
    arrays = write_tree(root, ["b", "a", "c"], n_train=8, n_test=2)
    cache = tmp_path / "cache"
    cfg = TrialConfig(dataset="imagefolder", val_size=3)
    s = load_splits(cfg, data_root=root, device=CPU, cache_dir=cache)
    files = list(cache.iterdir())
    assert [f.name for f in files] == [Path(s.cache_file).name] and s.cache_file.endswith(".pt")  # no temp files
    assert (s.name, s.classes, s.num_classes, s.image_size) == ("imagefolder:tiny", ("a", "b", "c"), 3, 8)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (21, 3, 6)
    i = int(s.test_idx[4])  # test files are ordered by class then name: a/0, a/1, b/0, b/1, c/0, c/1
    assert torch.equal(s.test_x[4], torch.from_numpy(arrays["test", "abc"[i // 2], i % 2]).permute(2, 0, 1))
    assert dataset_info("imagefolder", data_root=root)["num_classes"] == 3

    mtime = os.stat(s.cache_file).st_mtime_ns
    time.sleep(0.01)

    def no_decoding(*a: object, **k: object) -> None:
        raise AssertionError("decoded again instead of loading the cache")

    monkeypatch.setattr(cache_mod, "decode", no_decoding)
    s2 = load_splits(cfg, data_root=root, device=CPU, cache_dir=cache)
    assert os.stat(s.cache_file).st_mtime_ns == mtime and s2.cache_file == s.cache_file
    assert torch.equal(s.train_x, s2.train_x) and s.mean == s2.mean


def test_cache_defaults_into_root_and_follows_tree_changes(tmp_path: Path) -> None:
    root = tmp_path / "tiny"
    write_tree(root, ["a", "b"], n_train=4, n_test=1)
    cfg = TrialConfig(dataset="imagefolder", val_size=2)
    s = load_splits(cfg, data_root=root, device=CPU)
    assert Path(s.cache_file).parent == root / ".robustgrid-cache"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "a" / "9999.png")
    s2 = load_splits(cfg, data_root=root, device=CPU)
    assert s2.cache_file != s.cache_file and len(s2.train_y) == len(s.train_y) + 1


def test_cifar10_jpeg_root_may_be_the_tree_or_its_parent(tmp_path: Path) -> None:
    write_tree(tmp_path / "cifar10-jpeg", list(CIFAR10_CLASSES), n_train=2, n_test=1, ext=".jpg")
    cfg = TrialConfig(dataset="cifar10-jpeg", val_size=0, select_on="last")
    a = load_splits(cfg, data_root=tmp_path, device=CPU)
    b = load_splits(cfg, data_root=tmp_path / "cifar10-jpeg", device=CPU)
    assert a.name == b.name == "cifar10-jpeg" and a.cache_file == b.cache_file
    assert a.classes == CIFAR10_CLASSES and len(a.train_y) == 20 and len(a.test_y) == 10


def test_imagefolder_rejects_mixed_sizes(tmp_path: Path) -> None:
    write_tree(tmp_path, ["a"], n_train=2, n_test=1)
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "train" / "a" / "0002.png")
    with pytest.raises(ValueError, match=r"0002\.png is 8x9, not 8x8"):
        load_splits(TrialConfig(dataset="imagefolder", val_size=0, select_on="last"), data_root=tmp_path, device=CPU, cache_dir=tmp_path)


# --------------------------------------------------------------------------------------------------- real images


@pytest.mark.realdata
def test_cifar10_jpeg_real_images(real_data_root: Path) -> None:
    """First run decodes the 60,000 JPEGs into <root>/.robustgrid-cache (~10 s here); later runs load it (<1 s)."""
    s = load_splits(TrialConfig(dataset="cifar10-jpeg", val_size=0, select_on="last"), data_root=real_data_root, device=CPU)
    assert (len(s.train_y), len(s.test_y), s.num_classes, s.name) == (50_000, 10_000, 10, "cifar10-jpeg")
    assert s.train_x.shape[1:] == (3, 32, 32) and s.classes == CIFAR10_CLASSES
    assert torch.bincount(s.train_y).tolist() == [5000] * 10 and torch.bincount(s.test_y).tolist() == [1000] * 10
    assert np.allclose(s.mean, (0.4914, 0.4822, 0.4465), atol=0.005)
    assert np.allclose(s.std, (0.2470, 0.2435, 0.2616), atol=0.005)  # population std of the original images
