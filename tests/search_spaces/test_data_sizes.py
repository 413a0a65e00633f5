"""Image-folder datasets are planned with the tree's real sizes (classes for the head, image size, images per
split), read without decoding; fixed datasets with the catalog's; no data root, no invented sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from search_spaces.data_sizes import data_sizes
from search_spaces.plan import make_plan
from search_spaces.spec import SpecError, SweepSpec

CLASSES = ("ant", "bee", "cat")
N_TRAIN, N_TEST, SIZE = 4, 2, 16  # images per class


def _tree(root: Path) -> Path:
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        for c, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (SIZE, SIZE), (40 * c, 10 * i, 0)).save(d / f"{i}.png")
    (root / "train" / "ant" / "notes.txt").write_text("not an image")  # ignored, as the loader ignores it
    return root


SPEC = {"dataset": "imagefolder", "depths": [[1], [1], [1]], "widths": [[1], [1], [2]],
        "training": {"epochs": 2, "batch_size": 4, "val_size": 3}}


def test_tree_sizes_are_read_from_the_files(tmp_path: Path) -> None:
    s = data_sizes("imagefolder", str(_tree(tmp_path)))
    assert (s.num_classes, s.channels, s.image_size, s.n_train, s.n_test, s.measured) == (3, 3, 16, 12, 6, True)


def test_they_agree_with_the_workers_loader_probe(tmp_path: Path) -> None:
    from workers.data.registry import dataset_info

    root = str(_tree(tmp_path))
    info, s = dataset_info("imagefolder", data_root=root), data_sizes("imagefolder", root)
    assert (info["num_classes"], info["image_size"], info["channels"]) == (s.num_classes, s.image_size, s.channels)


def test_the_plan_counts_the_network_the_trainer_builds(tmp_path: Path) -> None:
    """params and MACs of the 3-class, 16-pixel network (the head has 3 outputs), not of a 10-class 32-pixel one."""
    from workers.models import build_model, count_macs

    plan = make_plan(SweepSpec(**SPEC), data_root=str(_tree(tmp_path)))
    (t,) = plan.trials
    model = build_model("wrn", depths=(1, 1, 1), widths=(1.0, 1.0, 2.0), num_classes=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert t.params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert t.macs == count_macs(model, (1, 3, SIZE, SIZE))
    ten = make_plan(SweepSpec(**SPEC | {"dataset": "synthetic"})).trials[0]  # 10 classes, 32 px
    assert t.params < ten.params and t.macs < ten.macs
    # the cost (sat: 4 passes + 2 per attack step): 12 - 3 = 9 training images and 3 validation images per epoch,
    # 6 test images at two checkpoints; not the catalog's invented 0 training and 10,000 test images
    tr, ev = 4 + 2 * t.config.train_attack.steps, 2 + 2 * t.config.eval_attack.steps
    expected = t.macs * (2 * (9 * tr + 3 * ev) + 2 * 6 * ev) / plan.macs_per_second
    assert t.est_seconds == pytest.approx(expected)


def test_no_data_root_says_the_tree_is_needed() -> None:
    with pytest.raises(SpecError) as e:
        make_plan(SweepSpec(**SPEC))
    assert e.value.field == "data_root" and "read from the tree" in str(e.value)


def test_a_root_without_splits_or_images_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no train/ and test/"):
        data_sizes("imagefolder", str(tmp_path))
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a").mkdir(parents=True)
    with pytest.raises(SpecError, match="no images under"):
        data_sizes("imagefolder", str(tmp_path))


def test_a_new_image_is_counted_by_the_next_plan(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    assert data_sizes("imagefolder", str(root)).n_train == 12
    Image.new("RGB", (SIZE, SIZE)).save(root / "train" / "bee" / "new.png")
    assert data_sizes("imagefolder", str(root)).n_train == 13  # the cache is keyed on the tree's state


def test_cifar10_jpeg_accepts_the_parent_of_its_tree(tmp_path: Path) -> None:
    _tree(tmp_path / "cifar10-jpeg")
    assert data_sizes("cifar10-jpeg", str(tmp_path)).n_test == 6


def test_fixed_datasets_use_the_catalog_without_a_root() -> None:
    s = data_sizes("cifar100")
    assert (s.num_classes, s.image_size, s.n_train, s.n_test, s.measured) == (100, 32, 50_000, 10_000, False)
