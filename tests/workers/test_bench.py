"""The benchmark suite: the quick B1/B2 run on CPU gives finite positive ratios and a six-row table; the status
rule; the reference loop is what B3 claims it is (weight gradients in its attack, no import of our attacks)."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from workers.bench import reference as ref
from workers.bench.common import Row, render
from workers.bench.suite import ALL, run_suite

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_quick_suite_b1_b2_on_cpu():
    rows, info = run_suite(device=CPU, quick=True, only={"B1", "B2"})
    assert [r.key for r in rows] == list(ALL)
    by = {r.key: r for r in rows}
    for key in ("B1", "B2"):
        v = by[key].value
        assert v is not None and math.isfinite(v) and v > 0, (key, v)
        assert by[key].status in ("PASS", "BELOW") and by[key].target is not None and by[key].floor is not None
    assert 0.2 < by["B1"].value < 5 and 2 < by["B2"].value < 40  # an attack step is a step; PGD-10 is ~10 steps
    assert all(by[k].text == "skipped" for k in ("B3", "B4", "B5", "B6"))
    table = render(rows)
    assert len(table.splitlines()) == 2 + 6 and all(k in table for k in ALL)
    assert info["threads"] == 1 and info["quick"] is True


def test_gpu_rows_say_so_on_cpu():
    rows, _ = run_suite(device=CPU, quick=True, only={"B4", "B6"})
    by = {r.key: r for r in rows}
    assert by["B4"].text == "n/a (GPU only)" and by["B6"].text == "not measured: no GPU lent"


def test_status_rule():
    assert Row("B1", "", 0.7, 0.75, 2 / 3, better="lower").status == "PASS"
    assert Row("B1", "", 0.8, 0.75, 2 / 3, better="lower").status == "BELOW"
    assert Row("B1", "", 0.6, 0.75, 2 / 3, better="lower").beyond_floor()
    assert Row("B3", "", 3.2, 3.0).status == "PASS" and Row("B3", "", 2.9, 3.0).status == "BELOW"
    assert Row("B4", "", None, 0.55, text="n/a").status == "-"


def test_unknown_benchmark_is_named():
    with pytest.raises(ValueError, match="B9"):
        run_suite(device=CPU, quick=True, only={"B9"})


def test_reference_is_written_without_our_attacks_and_methods():
    tree = ast.parse(Path(ref.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.startswith("workers") for m in imported), imported


def test_reference_attack_computes_weight_gradients_and_stays_in_the_ball():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10)).eval()
    x, y = torch.rand(4, 3, 8, 8), torch.randint(0, 10, (4,))
    delta = ref.attack_pgd(model, x, y, epsilon=8 / 255, alpha=2 / 255, attack_iters=3)
    assert model[1].weight.grad is not None  # loss.backward() in every step, as the public code
    assert delta.abs().max() <= 8 / 255 + 1e-6 and (x + delta).min() >= 0 and (x + delta).max() <= 1


def test_reference_loader_gives_augmented_float_batches():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    xb, yb = next(iter(ref.train_loader(x, torch.arange(8), batch_size=4, seed=0, workers=0)))
    assert xb.shape == (4, 3, 32, 32) and xb.dtype == torch.float32 and 0 <= xb.min() and xb.max() <= 1
    assert yb.shape == (4,)
