"""Training methods: each loss against its formula on controlled logits, WAR's lambda by hand, and the contract
(no optimiser, no backward, mode restored) over the whole registry."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from testkit.tiny_net import TinyNet
from torch import Tensor, nn

from workers.attacks import make_attack
from workers.methods import MethodContext, get_method, list_methods
from workers.methods.trades import kl_per_example

EPS = 8 / 255


class Pick(nn.Module):
    """logits = scale * x.flatten(1) with scale = 1: the input *is* the logits, so every loss is set by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x.flatten(1)


class FixedAttack:
    """x' = x + delta; calls grad_hook with each of `grads`; records the model's mode when called."""

    def __init__(self, delta: Tensor, grads: tuple[Tensor, ...] = ()) -> None:
        self.delta, self.grads, self.seen_training = delta, grads, None

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, grad_hook=None) -> Tensor:
        self.seen_training = model.training
        for g in self.grads:
            if grad_hook is not None:
                grad_hook(g)
        return (x + self.delta).detach()


def ctx_for(attack, *, lam: float = 1.0, zeta: float | None = None, bn_mode: str = "eval", **kw) -> MethodContext:
    return MethodContext(eps=kw.pop("eps", EPS), norm="linf", lam=lam, attack=attack, steps=kw.pop("steps", 3),
                         step_size=kw.pop("step_size", 2 / 255), start=kw.pop("start", "uniform"),
                         bn_mode=bn_mode, zeta=zeta, **kw)


def ce(logits: list[float], y: int) -> float:
    """Cross-entropy by hand: log(sum exp z) - z_y."""
    return math.log(sum(math.exp(z) for z in logits)) - logits[y]


# logits of 3 examples, 3 classes; the attack moves example 0 towards its label (its loss falls: GAT clips it)
X = torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.1, 0.0], [0.0, 2.0, 1.0]]).view(3, 1, 1, 3)
DELTA = torch.tensor([[0.5, 0.0, 0.0], [-0.3, 0.4, 0.0], [0.0, 0.0, 0.8]]).view(3, 1, 1, 3)
Y = torch.tensor([0, 0, 1])


def hand_losses() -> tuple[list[float], list[float]]:
    xs, xa = X.flatten(1).tolist(), (X + DELTA).flatten(1).tolist()
    return [ce(z, int(t)) for z, t in zip(xs, Y)], [ce(z, int(t)) for z, t in zip(xa, Y)]


def test_clean_is_cross_entropy():
    out = get_method("clean")(Pick(), X, Y, ctx_for(None))
    lc, _ = hand_losses()
    assert out.loss.item() == pytest.approx(sum(lc) / 3, abs=1e-6)
    assert float(out.robust_reg) == 0.0 and out.adv_logits is None and out.local_lipschitz is None


def test_sat_trains_on_the_adversarial_example_only():
    out = get_method("sat")(Pick(), X, Y, ctx_for(FixedAttack(DELTA)))
    lc, la = hand_losses()
    assert out.loss.item() == pytest.approx(sum(la) / 3, abs=1e-6)
    assert float(out.natural_risk) == pytest.approx(sum(lc) / 3, abs=1e-6)
    assert float(out.robust_reg) == pytest.approx((sum(la) - sum(lc)) / 3, abs=1e-6)
    assert out.lam == 1.0


@pytest.mark.parametrize("lam", [1.0, 1.5, 2.0])
def test_gat_formula_clips_per_example(lam):
    out = get_method("gat")(Pick(), X, Y, ctx_for(FixedAttack(DELTA), lam=lam))
    lc, la = hand_losses()
    diffs = [a - c for a, c in zip(la, lc)]
    assert diffs[0] < 0 < min(diffs[1:])  # example 0 is clipped
    reg = sum(max(d, 0.0) for d in diffs) / 3
    assert float(out.robust_reg) == pytest.approx(reg, abs=1e-6)
    assert out.loss.item() == pytest.approx(sum(lc) / 3 + lam * reg, abs=1e-6)
    assert float(out.robust_reg) > sum(diffs) / 3 + 1e-3  # clipping changed the value


def test_kl_by_hand():
    # p = softmax([0, ln 3]) = (1/4, 3/4), q = (1/2, 1/2): KL = 1/4 ln(1/2) + 3/4 ln(3/2) = 0.130812...
    kl = kl_per_example(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[0.0, 0.0]]))
    assert float(kl[0]) == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), abs=1e-6)


@pytest.mark.parametrize("lam", [6.0, 21.0])
def test_trades_formula(lam):
    torch.manual_seed(0)
    model, x, y = TinyNet(), torch.rand(16, 3, 8, 8), torch.randint(0, 10, (16,))
    ctx = ctx_for(None, lam=lam, steps=5, step_size=0.007, start="normal")
    out = get_method("trades")(model, x, y, ctx)
    p = F.softmax(out.clean_logits, 1)
    q = F.softmax(out.adv_logits, 1)
    kl = float((p * (p.log() - q.log())).sum() / len(y))  # batchmean
    assert float(out.robust_reg) == pytest.approx(kl, rel=1e-4)
    assert out.loss.item() == pytest.approx(float(F.cross_entropy(out.clean_logits, y)) + lam * kl, rel=1e-4)
    assert float(out.robust_reg) > 0 and out.local_lipschitz is not None


def test_trades_attack_increases_kl():
    torch.manual_seed(0)
    model, x, y = TinyNet().eval(), torch.rand(32, 3, 8, 8), torch.randint(0, 10, (32,))
    weak = get_method("trades")(model, x, y, ctx_for(None, steps=1, step_size=1e-4, start="normal"))
    strong = get_method("trades")(model, x, y, ctx_for(None, steps=10, step_size=EPS / 4, start="normal"))
    assert float(strong.robust_reg) > 10 * float(weak.robust_reg)


def test_mart_matches_reference_formula():
    lam = 6.0
    out = get_method("mart")(Pick(), X, Y, ctx_for(FixedAttack(DELTA), lam=lam))
    # the reference mart_loss, verbatim on the same logits
    logits, logits_adv, y = X.flatten(1), (X + DELTA).flatten(1), Y
    adv_probs = F.softmax(logits_adv, dim=1)
    tmp1 = torch.argsort(adv_probs, dim=1)[:, -2:]
    new_y = torch.where(tmp1[:, -1] == y, tmp1[:, -2], tmp1[:, -1])
    loss_adv = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), new_y)
    nat_probs = F.softmax(logits, dim=1)
    true_probs = torch.gather(nat_probs, 1, (y.unsqueeze(1)).long()).squeeze()
    kl = nn.KLDivLoss(reduction="none")
    loss_robust = (1.0 / 3) * torch.sum(torch.sum(kl(torch.log(adv_probs + 1e-12), nat_probs), dim=1)
                                        * (1.0000001 - true_probs))
    assert float(out.robust_reg) == pytest.approx(float(loss_robust), abs=1e-6)
    assert out.loss.item() == pytest.approx(float(loss_adv + lam * loss_robust), abs=1e-5)


def test_war_lambda_trajectory_by_hand():
    """Clean logits (0, 0), adversarial (-c, 0), label 0: l_nat = ln 2, l_rob = ln(1 + e^c) - ln 2 for every example.
    zeta = 1.5, alpha = 0.1, lambda_0 = 0; lambda_t = max(lambda_{t-1} + 0.1 (1.5 - l_nat / l_rob), 0):
      t=1, c=1.0: l_rob = 0.620115, ratio 1.117772, lambda = 0.0382228
      t=2, c=0.5: l_rob = 0.280930, ratio 2.467333, lambda = max(0.0382228 - 0.0967333, 0) = 0
      t=3, c=2.0: l_rob = 1.433781, ratio 0.483438, lambda = 0.1016562
    """
    ctx = ctx_for(None, zeta=1.5, war_alpha=0.1)
    x, y = torch.zeros(4, 1, 1, 2), torch.zeros(4, dtype=torch.long)
    expected = [(1.0, 0.620115, 0.0382228), (0.5, 0.280930, 0.0), (2.0, 1.433781, 0.1016562)]
    for c, l_rob, lam in expected:
        ctx.attack = FixedAttack(torch.tensor([-c, 0.0]).view(1, 1, 1, 2))
        out = get_method("war_gat")(Pick(), x, y, ctx)
        assert float(out.natural_risk) == pytest.approx(math.log(2), abs=1e-6)
        assert float(out.robust_reg) == pytest.approx(l_rob, abs=1e-6)
        assert out.lam == pytest.approx(lam, abs=1e-6)
        assert ctx.state["lam_t"] == pytest.approx(lam, abs=1e-6)
        assert out.loss.item() == pytest.approx(math.log(2) + lam * l_rob, abs=1e-6)  # updated first, then used


def test_war_needs_zeta():
    with pytest.raises(ValueError, match="zeta"):
        get_method("war_gat")(Pick(), X, Y, ctx_for(FixedAttack(DELTA)))


def test_fgsm_method_takes_one_step_of_ctx_step_size():
    """Logits = x, label 0: the CE gradient has sign (-1, +1); a 1.25 eps step from x (start 'none') is clipped
    to the ball: x' = x + eps * (-1, +1)."""
    x, y = torch.full((2, 1, 1, 2), 0.5), torch.zeros(2, dtype=torch.long)
    out = get_method("fgsm")(Pick(), x, y, ctx_for(None, eps=0.1, step_size=0.125, start="none"))
    torch.testing.assert_close(out.adv_logits, torch.tensor([[0.4, 0.6], [0.4, 0.6]]))


def test_local_lipschitz_is_max_over_steps_of_batch_mean_l1():
    def grads(row0: list[float], row1: list[float]) -> Tensor:  # (2, 1, 1, 3)
        return torch.tensor([row0, row1]).view(2, 1, 1, 3)

    g1 = grads([1.0, 0.0, 0.0], [-1.0, 1.0, -1.0])  # L1 norms 1, 3: batch mean 2
    g2 = grads([2.0, -2.0, 0.0], [0.0, 6.0, 0.0])  # 4, 6: 5
    g3 = grads([0.5, 0.5, 0.0], [0.0, 0.0, 0.0])  # 1, 0: 0.5
    out = get_method("sat")(Pick(), X[:2], Y[:2], ctx_for(FixedAttack(DELTA[:2], (g1, g2, g3))))
    assert out.local_lipschitz == pytest.approx(5.0)


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
@pytest.mark.parametrize("caller_training", [True, False])
def test_bn_mode_during_attack_and_mode_restored(bn_mode, caller_training):
    model = TinyNet().train(caller_training)
    model.bn.eval()  # a caller's per-submodule choice must survive too
    attack = FixedAttack(torch.zeros(1, 3, 8, 8))
    get_method("gat")(model, torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long), ctx_for(attack, bn_mode=bn_mode))
    assert attack.seen_training is (bn_mode == "train")
    assert model.training is caller_training and model.bn.training is False and model.conv.training is caller_training


def test_sat_clean_forward_does_not_move_bn_statistics():
    torch.manual_seed(0)
    model, x, y = TinyNet().train(), torch.rand(8, 3, 8, 8), torch.randint(0, 10, (8,))
    delta = 0.03 * torch.randn(8, 3, 8, 8)
    reference = copy.deepcopy(model)
    get_method("sat")(model, x, y, ctx_for(FixedAttack(delta)))
    reference(x + delta)  # what training on x' alone does to the statistics
    torch.testing.assert_close(model.bn.running_mean, reference.bn.running_mean)
    torch.testing.assert_close(model.bn.running_var, reference.bn.running_var)
    assert int(model.bn.num_batches_tracked) == 1


@pytest.mark.parametrize("name", list_methods())
def test_registry_methods_contract(name):
    """Every method: finite scalar loss with a graph, no backward of its own, detached metrics, mode restored."""
    torch.manual_seed(0)
    model, x, y = TinyNet().train(), torch.rand(16, 3, 8, 8), torch.randint(0, 10, (16,))
    attack = make_attack("pgd", eps=EPS, steps=2, step_size=2 / 255)
    ctx = ctx_for(attack, lam=2.0, zeta=1.0, steps=2, step_size=2 / 255)
    out = get_method(name)(model, x, y, ctx)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert out.loss.dim() == 0 and out.loss.requires_grad and math.isfinite(out.loss.item())
    for t in (out.natural_risk, out.robust_reg, out.clean_logits):
        assert not t.requires_grad
    assert out.clean_logits.shape == (16, 10)
    assert float(out.robust_reg) >= 0.0 or name in ("sat", "fgsm")
    assert isinstance(out.lam, float)
    if name == "clean":
        assert out.local_lipschitz is None and out.adv_logits is None
    else:
        assert out.local_lipschitz is not None and out.local_lipschitz > 0 and out.adv_logits.shape == (16, 10)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="unknown method 'nope'; known: .*gat"):
        get_method("nope")


def _ce_grad_l1_max(model: nn.Module, iterates: list[Tensor], y: Tensor) -> float:
    """science.md's local Lipschitz on given iterates: max over k of the batch mean of ||grad_x CE(f(x_k), y)||_1."""
    best = 0.0
    for xk in iterates:
        xk = xk.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xk), y, reduction="sum"), xk)
        best = max(best, float(g.abs().flatten(1).sum(1).mean()))
    return best


def test_trades_local_lipschitz_is_the_ce_gradient_on_its_own_iterates():
    """TRADES' attack maximises KL, but the logged local Lipschitz is the CE-gradient quantity of every method."""
    torch.manual_seed(0)
    model, x, y = TinyNet().eval(), torch.rand(16, 3, 8, 8), torch.randint(0, 10, (16,))
    ctx = ctx_for(None, steps=4, step_size=EPS / 4, start="normal")
    torch.manual_seed(1)
    out = get_method("trades")(model, x, y, ctx)
    # the same iterates by hand: the reference's sign-gradient ascent on KL from x + 0.001 N(0, 1)
    torch.manual_seed(1)
    p = F.softmax(model(x), 1).detach()
    xk = (x + 0.001 * torch.randn_like(x)).clamp(x - EPS, x + EPS).clamp(0, 1)
    iterates = []
    for _ in range(4):
        iterates.append(xk)
        xk = xk.clone().requires_grad_(True)
        kl = (p * (p.log() - F.log_softmax(model(xk), 1))).sum()
        (g,) = torch.autograd.grad(kl, xk)
        xk = torch.min(torch.max(xk.detach() + EPS / 4 * g.sign(), x - EPS), x + EPS).clamp(0, 1)
    torch.testing.assert_close(out.adv_logits, model(xk).detach(), rtol=1e-4, atol=1e-5)  # same iterates
    assert float(out.local_lipschitz) == pytest.approx(_ce_grad_l1_max(model, iterates, y), rel=1e-4)


def test_trades_l2_inner_max_is_the_reference_sgd_on_normalised_gradients():
    """TRADES' official `distance == 'l_2'` branch: delta = 0.001 N(0, 1); SGD (lr 2 eps / steps) on -KL with the
    gradient renormalised per example; then clamp x + delta to [0, 1] and renorm delta to the eps ball."""
    torch.manual_seed(0)
    model, x, y = TinyNet().eval(), torch.rand(8, 3, 8, 8), torch.randint(0, 10, (8,))
    eps, steps = 0.5, 5
    ctx = MethodContext(eps=eps, norm="l2", lam=6.0, attack=None, steps=steps, step_size=2 * eps / steps,
                        start="normal")
    torch.manual_seed(3)
    out = get_method("trades")(model, x, y, ctx)
    torch.manual_seed(3)  # the reference, transcribed
    delta = (0.001 * torch.randn(x.shape)).requires_grad_(True)
    opt = torch.optim.SGD([delta], lr=eps / steps * 2)
    p = F.softmax(model(x), dim=1).detach()
    for _ in range(steps):
        opt.zero_grad()
        loss = -1 * nn.KLDivLoss(reduction="sum")(F.log_softmax(model(x + delta), dim=1), p)
        loss.backward()
        norms = delta.grad.view(len(x), -1).norm(p=2, dim=1)
        delta.grad.div_(norms.view(-1, 1, 1, 1))
        opt.step()
        delta.data.add_(x)
        delta.data.clamp_(0, 1).sub_(x)
        delta.data.renorm_(p=2, dim=0, maxnorm=eps)
    model.zero_grad(set_to_none=True)
    x_ref = (x + delta).detach()
    assert float((x_ref - x).flatten(1).norm(dim=1).max()) > 0.9 * eps  # it does reach the boundary
    torch.testing.assert_close(out.adv_logits, model(x_ref).detach(), rtol=1e-4, atol=1e-5)


def test_mart_default_start_is_normal():
    from search_spaces.catalog import METHOD_DEFAULTS

    assert METHOD_DEFAULTS["mart"]["train_attack"]["start"] == "normal"
    assert METHOD_DEFAULTS["fgsm"]["bn_mode_attack"] == "train"
