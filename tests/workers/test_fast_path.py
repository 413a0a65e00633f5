"""The fast path: attack steps compute input gradients only, SAT runs no redundant forward pass, the epoch's
metrics stay exact when the natural-risk forward is sampled, and bf16 autocast leaves PGD-20 robust accuracy
within 0.5 points of fp32 on the same checkpoint (CPU here; the same check on CUDA where one is present)."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from search_spaces.config import TrialConfig
from workers.attacks import make_attack
from workers.data import load_splits
from workers.evaluate import evaluate
from workers.methods import MethodContext, get_method
from workers.models import build_model
from workers.trainer import NATURAL_EVERY, Trainer, autocast, eval_attack

EPS = 8 / 255
TINY = {"depths": (1, 1, 1), "widths": (0.5, 0.5, 0.5), "dataset": "synthetic", "n_train": 640, "val_size": 0, "select_on": "last",
        "n_test": 1024, "epochs": 3, "batch_size": 64, "lr": 0.1, "schedule": {"kind": "constant"},
        "train_attack": {"steps": 3, "step_size": 2 / 255}, "eval_attack": {"steps": 20, "step_size": None}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class BackwardSpy(TorchDispatchMode):
    """Records which gradients every conv and BN backward computes: (input, weight, bias) output masks."""

    def __init__(self) -> None:
        super().__init__()
        self.masks: dict[str, set[tuple[bool, ...]]] = {}
        self.mm = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten.convolution_backward.default:
            self.masks.setdefault("conv", set()).add(tuple(args[-1]))
        elif func is torch.ops.aten.native_batch_norm_backward.default:
            self.masks.setdefault("bn", set()).add(tuple(args[-1]))
        elif func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
            self.mm += 1
        return func(*args, **kwargs)


def _wrn(**kw) -> torch.nn.Module:
    return build_model("wrn", depths=(1, 1, 1), widths=(1, 1, 1), num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3, **kw)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_pgd_steps_compute_input_gradients_only(mode):
    torch.manual_seed(0)
    model = _wrn().train(mode == "train")
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    atk = make_attack("pgd", eps=EPS, steps=3, step_size=2 / 255)
    with BackwardSpy() as spy:
        atk(model, x, y)
    assert spy.masks["conv"] == {(True, False, False)}  # grad input only: no weight (or bias) gradient
    assert all(m[1:] == (False, False) for m in spy.masks["bn"])  # BN: no weight / bias gradient
    # per step: one forward linear (addmm) and one input-gradient mm; a weight gradient would add a second mm
    assert spy.mm == 3 * 2
    assert all(p.grad is None for p in model.parameters())


def _count_forwards(model: torch.nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("natural", [True, False])
def test_sat_forwards_are_attack_steps_plus_update_plus_optional_natural(natural):
    torch.manual_seed(0)
    model = _wrn().train()
    calls = _count_forwards(model)
    ctx = MethodContext(eps=EPS, norm="linf", lam=1.0, attack=make_attack("pgd", eps=EPS, steps=4), steps=4,
                        step_size=2 / 255, start="uniform", natural_forward=natural)
    out = get_method("sat")(model, torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,)), ctx)
    assert calls[0] == 4 + 1 + int(natural)
    assert (out.clean_logits is not None) is natural
    assert torch.isnan(out.natural_risk).item() is not natural


def test_epoch_samples_the_natural_forward_and_keeps_robust_reg_exact():
    cfg = TrialConfig(**{**TINY, "epochs": 1, "n_train": 64 * 10})  # 10 batches
    tr = Trainer(cfg, device=torch.device("cpu"), data_root=None)
    calls = _count_forwards(tr.model)
    m = tr.train_epoch(0)
    n_natural = -(-10 // NATURAL_EVERY)  # batches 0, 8
    assert calls[0] == 10 * (3 + 1) + n_natural
    assert m["robust_reg"] == pytest.approx(m["adv_loss_train"] - m["natural_risk"], abs=1e-5)
    assert m["clean_loss_train"] == pytest.approx(m["natural_risk"], abs=1e-5)  # SAT: natural risk = clean CE
    assert 0 < m["natural_risk"] < m["adv_loss_train"] and m["local_lipschitz"] > 0


def _pgd20_fp32_vs_bf16(device: torch.device) -> tuple[float, float, int]:
    """Train TINY for 3 epochs (fp32), then PGD-20 on the same checkpoint, the same test images and the same random
    start, once in fp32 and once under the fast path's bf16 autocast."""
    cfg = TrialConfig(**TINY, precision="fp32")
    data = load_splits(cfg, data_root=None, device=device, source_options={"n_train": 640, "n_test": 1024})
    tr = Trainer(cfg, device=device, data_root=None, data=data)
    for e in range(TINY["epochs"]):
        tr.train_epoch(e)
    d = tr.data
    accs = []
    for precision in ("fp32", "bf16"):
        cfg = TrialConfig(**TINY, precision=precision)
        torch.manual_seed(1)
        with autocast(cfg, device):
            m = evaluate(tr.model, d.test_x, d.test_y, attack=eval_attack(cfg), batch_size=512)
        accs.append(100 * m["robust_acc"])
    return accs[0], accs[1], len(d.test_y)


def test_bf16_pgd20_matches_fp32_within_half_a_point_cpu():
    fp32, bf16, n = _pgd20_fp32_vs_bf16(torch.device("cpu"))
    assert n == 1024 and 20 < fp32 < 95  # a model that is neither broken nor trivially robust
    assert abs(bf16 - fp32) <= 0.5, (fp32, bf16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_pgd20_matches_fp32_within_half_a_point_cuda():
    fp32, bf16, _ = _pgd20_fp32_vs_bf16(torch.device("cuda"))
    assert 20 < fp32 < 95
    assert abs(bf16 - fp32) <= 0.5, (fp32, bf16)
