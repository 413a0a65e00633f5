"""Contract tests of workers.models: every registered model, plus the numbers Study A depends on."""

from __future__ import annotations

import itertools
import math
import pathlib
import time

import pytest
import torch
from torch import nn

from workers.models import build_model, count_macs, count_params, list_models, model_counts, register_model

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2471, 0.2435, 0.2616)

# a small, fast configuration per registered model; a new model must add one here
SMALL: dict[str, dict] = {
    "wrn": dict(depths=(1, 1, 1), widths=(1.0, 1.0, 1.0), in_channels=3, size=32),
    "preactresnet18": dict(depths=(1, 1, 1, 1), widths=(0.25, 0.25, 0.25, 0.25), in_channels=3, size=32),
    "densenet_bc": dict(depths=(2, 2, 2), widths=(4.0,), in_channels=3, size=32),
    "smallcnn": dict(depths=(1,), widths=(1.0,), in_channels=1, size=28),
}
NUM_CLASSES = 7


def small_model(name: str, **overrides) -> tuple[nn.Module, tuple[int, int, int, int]]:
    if name not in SMALL:
        pytest.fail(f"add a small configuration for the new model {name!r} to SMALL")
    cfg = {**SMALL[name], **overrides}
    c, size = cfg.pop("in_channels"), cfg.pop("size")
    torch.manual_seed(0)
    model = build_model(
        name, num_classes=NUM_CLASSES, mean=(0.5,) * c, std=(0.25,) * c, in_channels=c, **cfg
    )
    return model, (2, c, size, size)


def wrn(depths, widths, **kw) -> nn.Module:
    return build_model("wrn", depths=depths, widths=widths, num_classes=10, mean=CIFAR_MEAN, std=CIFAR_STD, **kw)


# ---------------------------------------------------------------------------------------------- every model


def test_registry_lists_the_models():
    assert list_models() == sorted(list_models())
    assert {"wrn", "preactresnet18", "densenet_bc", "smallcnn"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_forward_shapes_blocks_and_counts(name):
    model, shape = small_model(name)
    model.eval()
    x = torch.rand(shape)  # (B, C, H, W) in [0, 1]
    with torch.no_grad():
        logits = model(x)
        logits_b, blocks = model.forward_with_blocks(x)
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    assert torch.equal(logits, logits_b)
    assert len(blocks) > 0 and all(b.shape[0] == 2 and torch.isfinite(b).all() for b in blocks)

    n_params = count_params(model)
    assert n_params == sum(p.numel() for p in model.parameters())
    macs = count_macs(model, (1, *shape[1:]))
    assert macs > 0
    cfg = SMALL[name]
    assert model_counts(
        name,
        depths=cfg["depths"],
        widths=cfg["widths"],
        num_classes=NUM_CLASSES,
        in_channels=cfg["in_channels"],
        input_size=cfg["size"],
    ) == (n_params, macs)


@pytest.mark.parametrize("name", list_models())
def test_backward_and_train_mode_with_dropout(name):
    model, shape = small_model(name, dropout=0.2)
    model.train()
    model(torch.rand(shape)).sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.training  # count_macs below must restore it
    count_macs(model, (1, *shape[1:]))
    assert model.training and all(m.training for m in model.modules())


@pytest.mark.parametrize("name", list_models())
def test_normalisation_is_inside_the_model_and_not_a_parameter(name):
    model, shape = small_model(name)
    model.eval()
    c = shape[1]
    plain = build_model(
        name, num_classes=NUM_CLASSES, mean=(0.0,) * c, std=(1.0,) * c, in_channels=c,
        depths=SMALL[name]["depths"], widths=SMALL[name]["widths"],
    ).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    plain.load_state_dict(state, strict=False)
    x = torch.rand(shape)
    with torch.no_grad():
        assert torch.allclose(model(x), plain((x - 0.5) / 0.25), atol=1e-5)
    assert "normalize.mean" in model.state_dict()
    assert not any(n.startswith("normalize.") for n, _ in model.named_parameters())


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; known: densenet_bc, preactresnet18, smallcnn, wrn"):
        build_model("nope", depths=(1,), widths=(1.0,), num_classes=10, mean=(0.0,), std=(1.0,), in_channels=1)


def test_register_model_refuses_a_duplicate_name():
    with pytest.raises(ValueError, match="already registered"):
        register_model("wrn")(lambda **kw: nn.Identity())


@pytest.mark.parametrize(
    ("name", "kwargs", "field"),
    [
        ("wrn", dict(depths=(5, 5, 5), widths=(-1.0, 10.0, 10.0)), "widths"),
        ("wrn", dict(depths=(5, 5, 5), widths=(0.0, 10.0, 10.0)), "widths"),
        ("wrn", dict(depths=(5, 5, 5), widths=(0.01, 10.0, 10.0)), "widths"),  # rounds to 0 channels
        ("wrn", dict(depths=(5, -1, 5), widths=(10.0, 10.0, 10.0)), "depths"),
        ("wrn", dict(depths=(0, 0, 0), widths=(10.0, 10.0, 10.0)), "depths"),
        ("wrn", dict(depths=(5, 5), widths=(10.0, 10.0)), "depths"),
        ("wrn", dict(depths=(5, 5, 5), widths=(10.0, 10.0)), "widths"),
        ("wrn", dict(depths=(5, 5, 5), widths=(10.0,) * 3, num_classes=0), "num_classes"),
        ("wrn", dict(depths=(5, 5, 5), widths=(10.0,) * 3, dropout=1.0), "dropout"),
        ("wrn", dict(depths=(5, 5, 5), widths=(10.0,) * 3, mean=(0.5,)), "mean"),
        ("wrn", dict(depths=(5, 5, 5), widths=(10.0,) * 3, std=(0.5, 0.0, 0.5)), "std"),
        ("wrn", dict(depths=(5, 5, 5), widths=(10.0,) * 3, stride_shortcut_input="x"), "stride_shortcut_input"),
        ("preactresnet18", dict(depths=(2, 2, 2, 2), widths=(1.0, 1.0, 1.0)), "widths"),
        ("preactresnet18", dict(depths=(2, 2, 2), widths=(1.0,) * 4), "depths"),
        ("densenet_bc", dict(depths=(6, 6, 6), widths=(12.0, 12.0)), "widths"),
        ("densenet_bc", dict(depths=(6, 6, 6), widths=(-12.0,)), "widths"),
        ("smallcnn", dict(depths=(1,), widths=(-1.0,)), "widths"),
    ],
)
def test_bad_arguments_name_the_field(name, kwargs, field):
    args = dict(num_classes=10, mean=CIFAR_MEAN, std=CIFAR_STD, in_channels=3) | kwargs
    with pytest.raises(ValueError, match=field):
        build_model(name, **args)


def test_library_code_never_picks_a_device():
    src = pathlib.Path(__file__).resolve().parents[2] / "workers" / "models"
    for f in src.glob("*.py"):
        text = f.read_text()
        assert ".cuda(" not in text, f
        assert len(text.splitlines()) < 400, f


# ---------------------------------------------------------------------------------------------- WRN numbers


def test_wrn_34_10_has_the_published_parameter_count():
    params, macs = model_counts("wrn", depths=(5, 5, 5), widths=(10, 10, 10))
    assert params == 46_160_474
    assert macs == 6_658_906_368  # MACs of one 32x32 image
    assert params == wrn_params_formula((5, 5, 5), (160, 320, 640))


def test_trades_sub_block1_adds_unused_parameters_only():
    base = model_counts("wrn", depths=(5, 5, 5), widths=(10, 10, 10))
    with_sub = model_counts("wrn", depths=(5, 5, 5), widths=(10, 10, 10), sub_block1=True)
    assert with_sub == (48_262_586, base[1])  # TRADES' own parameters() count; same FLOPs
    a = wrn((1, 1, 1), (1, 1, 1)).eval()
    b = wrn((1, 1, 1), (1, 1, 1), sub_block1=True).eval()
    b.load_state_dict(a.state_dict(), strict=False)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert any(k.startswith("sub_block1.") for k in b.state_dict())


def wrn_params_formula(depths, channels, in_channels=3, num_classes=10) -> int:
    """Closed form of the stage-wise WRN's parameter count (science.md section 1)."""
    total, c = 9 * in_channels * 16, 16
    for d, out, stride in zip(depths, channels, (1, 2, 2)):
        if d == 0:
            continue
        shortcut = c * out if (c != out or stride != 1) else 0
        total += 2 * c + 9 * c * out + 2 * out + 9 * out * out + shortcut  # first block
        total += (d - 1) * (4 * out + 18 * out * out)
        c = out
    return total + 2 * c + c * num_classes + num_classes


def test_depth_grid_is_counted_in_seconds_and_all_distinct():
    model_counts("wrn", depths=(1, 1, 1), widths=(10, 10, 10))  # warm up the meta kernels
    start = time.process_time()
    counts = {
        d: model_counts("wrn", depths=d, widths=(10, 10, 10)) for d in itertools.product((1, 3, 5, 7, 9), repeat=3)
    }
    cpu_s = time.process_time() - start
    assert cpu_s < 20.0, f"counting the 125-network grid took {cpu_s:.1f} CPU s"
    assert len(counts) == 125
    assert len({p for p, _ in counts.values()}) == 125
    for d, (params, _) in counts.items():
        assert params == wrn_params_formula(d, (160, 320, 640)), d


def test_macs_of_a_tiny_net_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    assert count_macs(net, (1, 3, 8, 8)) == 8 * 8 * 4 * (3 * 9) + 256 * 5
    assert count_macs(net, (2, 3, 8, 8)) == 2 * (8 * 8 * 4 * (3 * 9) + 256 * 5)  # whole batch

    # wrn d1-1-0 w1-1-1 on 8x8: stem, one 16->16 block, one 16->32 stride-2 block with shortcut, linear
    stem = (8 * 8 * 16) * (3 * 9)
    block1 = 2 * (8 * 8 * 16) * (16 * 9)
    block2 = (4 * 4 * 32) * (16 * 9) + (4 * 4 * 32) * (32 * 9) + (4 * 4 * 32) * 16
    head = 32 * 10
    assert model_counts("wrn", depths=(1, 1, 0), widths=(1, 1, 1), input_size=8)[1] == stem + block1 + block2 + head


def test_wrn_init_statistics():
    torch.manual_seed(0)
    model = wrn((1, 1, 1), (4, 4, 4))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 3 * 2 + 3  # stem, two per block, three shortcuts
    for m in convs:
        k = m.kernel_size[0] * m.kernel_size[1]
        expected = math.sqrt(2.0 / (k * m.out_channels))
        w = m.weight.detach()
        assert w.std().item() == pytest.approx(expected, rel=0.1)
        assert abs(w.mean().item()) < 4 * expected / math.sqrt(w.numel())
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    assert torch.all(model.fc.bias == 0)


# ---------------------------------------------------------------------------------------------- grid members


@pytest.mark.parametrize(
    ("depths", "widths", "last_shape"),
    [
        ((1, 3, 5), (2, 4, 6), (384, 8, 8)),
        ((5, 5, 0), (1, 1, 1), (32, 16, 16)),  # removed stage: two stages, the head takes stage-2 channels
        ((0, 2, 2), (1, 1, 1), (64, 8, 8)),  # removed first stage: strides 2, 2 remain
        ((1, 1, 1), (4, 2, 1), (64, 8, 8)),  # stride-2 block with equal channels (64 -> 64) needs the 1x1 shortcut
        ((1, 1, 1), (2.5, 1.5, 0.75), (48, 8, 8)),  # fractional widths: 40, 48, 48 channels
    ],
)
def test_wrn_grid_members_build_and_run(depths, widths, last_shape):
    model = wrn(depths, widths).eval()
    with torch.no_grad():
        logits, blocks = model.forward_with_blocks(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert len(blocks) == sum(depths)
    assert blocks[-1].shape == (2, *last_shape)
    assert model.fc.in_features == last_shape[0]
    channels = tuple(int(math.floor(base * w + 0.5)) for base, w in zip((16, 32, 64), widths))
    assert count_params(model) == wrn_params_formula(depths, channels)


def test_stride_shortcut_input_option():
    torch.manual_seed(0)
    pre = wrn((1, 1, 1), (4, 2, 1), stride_shortcut_input="preact").eval()
    raw = wrn((1, 1, 1), (4, 2, 1), stride_shortcut_input="raw").eval()
    raw.load_state_dict(pre.state_dict())
    assert count_params(pre) == count_params(raw)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(pre(x), raw(x))  # the equal-channel stride-2 shortcut sees a different input
        # with channels changing at every stride (w10-10-10) the two rules are the same network
        a = wrn((1, 1, 1), (1, 1, 1), stride_shortcut_input="preact").eval()
        b = wrn((1, 1, 1), (1, 1, 1), stride_shortcut_input="raw").eval()
        b.load_state_dict(a.state_dict())
        assert torch.equal(a(x), b(x))


def test_default_shortcut_is_robustwrn_raw_input():
    """An equal-channel stride-2 block's shortcut takes the block's raw input by default, as RobustWRN does."""
    model = wrn((1, 1, 1), (4, 2, 2))  # channels 64, 64, 128: block2 keeps 64 at stride 2, block3 widens
    assert model.block2.layer[0].shortcut_from_raw and not model.block3.layer[0].shortcut_from_raw


# ---------------------------------------------------------------------------------------------- other families


def test_preactresnet18_count():
    assert model_counts("preactresnet18", depths=(2, 2, 2, 2), widths=(1, 1, 1, 1))[0] == 11_172_170


def test_densenet_bc_counts_follow_the_reference_formula():
    bc40 = model_counts("densenet_bc", depths=(6, 6, 6), widths=(12,))
    assert bc40[0] == 176_122  # DenseNet-BC (L=40, k=12), CIFAR-10
    assert model_counts("densenet_bc", depths=(6, 6, 6), widths=(12, 12, 12)) == bc40
    assert model_counts("densenet_bc", depths=(16, 16, 16), widths=(12,))[0] == 769_162  # BC-100, k=12: 0.8M


def test_smallcnn_mnist():
    assert model_counts("smallcnn", depths=(1,), widths=(1,), in_channels=1, input_size=28)[0] == 312_202
    model = build_model("smallcnn", depths=(1,), widths=(1.0,), num_classes=10, mean=(0.1307,), std=(0.3081,),
                        in_channels=1).eval()
    with torch.no_grad():
        logits, blocks = model.forward_with_blocks(torch.rand(2, 1, 28, 28))
    assert [tuple(b.shape) for b in blocks] == [(2, 32, 12, 12), (2, 64, 4, 4), (2, 200), (2, 200)]
    assert torch.equal(logits, torch.zeros(2, 10))  # TRADES zero-initialises the last layer
