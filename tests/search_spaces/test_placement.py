"""Placement: predicted memory -> GPU share; small grid members share a GPU, big ones get a whole one."""

from __future__ import annotations

import pytest
import torch

from search_spaces.placement import (
    BYTES_PER_PARAM,
    CONTEXT_BYTES,
    GIB,
    SAFETY,
    gpu_fraction,
    place,
    predict_memory_gib,
)


def test_memory_is_the_sum_of_its_terms() -> None:
    got = predict_memory_gib(params=1_000_000, batch_size=128, eval_batch_size=512, act_elems_per_image=200_000,
                             method="trades", images_on_device=10_000)
    # TRADES: two graphs at batch 128 (256 images) < the evaluation attack's 512 images; bf16: 3 bytes per element
    want = SAFETY * (CONTEXT_BYTES + 16_000_000 + 512 * 200_000 * 3 + 10_000 * 3 * 32 * 32) / GIB
    assert got == pytest.approx(want)
    sat = predict_memory_gib(params=1_000_000, batch_size=128, act_elems_per_image=200_000, method="sat",
                             images_on_device=0, bf16=False)
    assert sat == pytest.approx(SAFETY * (CONTEXT_BYTES + 1_000_000 * BYTES_PER_PARAM + 128 * 200_000 * 4) / GIB)
    trades = predict_memory_gib(params=1_000_000, batch_size=128, act_elems_per_image=200_000, method="trades",
                                images_on_device=0, bf16=False)
    assert trades - sat == pytest.approx(SAFETY * 128 * 200_000 * 4 / GIB)  # the second graph


@pytest.mark.parametrize(("mem", "fraction"), [(0.5, 0.25), (20.0, 0.25), (20.1, 0.5), (40.0, 0.5), (40.1, 1.0),
                                               (79.0, 1.0), (500.0, 1.0)])
def test_gpu_fraction_on_an_80_gib_gpu(mem: float, fraction: float) -> None:
    assert gpu_fraction(mem, gpu_memory_gib=80.0) == fraction


def test_min_fraction_and_bad_arguments() -> None:
    assert gpu_fraction(1.0, gpu_memory_gib=80.0, min_fraction=0.125) == 0.125
    assert gpu_fraction(1.0, gpu_memory_gib=80.0, min_fraction=0.5) == 0.5
    with pytest.raises(ValueError, match="gpu_memory_gib"):
        gpu_fraction(1.0, gpu_memory_gib=0.0)
    with pytest.raises(ValueError, match="min_fraction"):
        gpu_fraction(1.0, gpu_memory_gib=80.0, min_fraction=0.0)
    with pytest.raises(ValueError, match=">= 0"):
        predict_memory_gib(params=-1, batch_size=1, act_elems_per_image=1, method="sat", images_on_device=0)


def test_cpu_only_cluster_gets_no_gpu() -> None:
    r = place(3.0, cluster_gpus=0, gpu_memory_gib=80.0)
    assert (r.cpu, r.gpu, r.memory_gib) == (1.0, 0.0, 3.0)
    assert r.as_ray() == {"CPU": 1.0}
    assert place(3.0, cluster_gpus=1, gpu_memory_gib=80.0).as_ray() == {"CPU": 1.0, "GPU": 0.25}


def test_meta_activation_count_matches_a_real_forward() -> None:
    """workers.memory_probe counts on the meta device exactly what autograd saves on a real CPU forward."""
    from workers.memory_probe import act_elems_per_image
    from workers.models import build_model

    net = build_model("wrn", depths=(1, 1, 1), widths=(1.0, 1.0, 1.0), num_classes=10, mean=(0.5,) * 3,
                      std=(0.25,) * 3).train()
    counts = []
    for batch in (2, 4):
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(torch.rand(batch, 3, 32, 32))
        counts.append(total)
    assert act_elems_per_image("wrn", (1, 1, 1), (1.0, 1.0, 1.0)) == (counts[1] - counts[0]) / 2 > 0


def test_small_grid_members_share_a_gpu_and_big_ones_do_not() -> None:
    """WRN-d1-1-1-w1 shares an H100 four ways; WRN-34-10 (d5-5-5-w10) under TRADES at batch 128 needs more."""
    from search_spaces.config import TrialConfig
    from workers.driver import trial_resources

    tiny = TrialConfig(depths=(1, 1, 1), widths=(1.0, 1.0, 1.0))
    big = TrialConfig(method="trades", lam=6.0, batch_size=512)
    assert trial_resources(tiny, 78_042, cluster_gpus=1, gpu_gib=80.0) == {"CPU": 1, "GPU": 0.25}
    assert trial_resources(big, 46_160_474, cluster_gpus=1, gpu_gib=80.0)["GPU"] >= 0.5
    assert trial_resources(big, 46_160_474, cluster_gpus=1, gpu_gib=16.0)["GPU"] == 1.0
    assert trial_resources(big, 46_160_474, cluster_gpus=0, gpu_gib=80.0) == {"CPU": 1}
