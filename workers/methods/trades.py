"""TRADES (Zhang et al., 2019): L(f(x), y) + beta * KL(softmax f(x) || softmax f(x')), x' maximising the KL."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.attacks.trades_kl import TradesKL
from workers.methods.base import MethodContext, MethodOutput, bn_mode, run_attack
from workers.methods.gat import Terms
from workers.methods.registry import register_method


def kl_per_example(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """KL(softmax p || softmax q) per example, (B, K), (B, K) -> (B,), from log-softmaxes (no log(0))."""
    log_p = F.log_softmax(p_logits, dim=1)
    return (log_p.exp() * (log_p - F.log_softmax(q_logits, dim=1))).sum(1)


def trades_terms(model: nn.Module, x: Tensor, y: Tensor, ctx: MethodContext) -> Terms:
    """l_nat = CE(f(x), y); l_rob = KL batchmean (sum over the batch / B, as the reference's
    `(1/batch_size) * KLDivLoss(size_average=False)`), gradient through both f(x) and f(x') as in the reference.
    The attack's target softmax f(x) is computed once, without gradient, in ctx.bn_mode (the reference recomputes
    it in eval mode at every step); the attack (workers.attacks.trades_kl: the reference's l_inf or l_2 branch) is
    built from ctx.steps, ctx.step_size, ctx.start (TRADES: 10, 0.007 at 8/255 or 2 eps / steps in L2, 'normal').
    local_lipschitz is the CE-gradient quantity of every method, measured along the KL attack's iterates on the
    batches where ctx.natural_forward is set (one extra backward per step there; None on the others).
    [https://arxiv.org/abs/1901.08573, github.com/yaodongyu/TRADES]"""
    with torch.no_grad(), bn_mode(model, ctx.bn_mode):
        p_clean = F.softmax(model(x).float(), dim=1)  # (B, K)
    attack = TradesKL(eps=ctx.eps, norm=ctx.norm, steps=ctx.steps, step_size=ctx.step_size, start=ctx.start,
                      target=p_clean)
    x_adv, lip = run_attack(model, x, y, ctx, attack, track=ctx.natural_forward)
    clean_logits = model(x).float()
    adv_logits = model(x_adv).float()
    l_nat = F.cross_entropy(clean_logits, y)
    l_rob = kl_per_example(clean_logits, adv_logits).mean()
    return Terms(l_nat, l_rob, lip, clean_logits, adv_logits)


@register_method("trades")
def trades(model: nn.Module, x: Tensor, y: Tensor, ctx: MethodContext) -> MethodOutput:
    """CE(f(x), y) + ctx.lam * KL(softmax f(x) || softmax f(x')) (lam is TRADES' beta, grid 6 .. 21).
    local_lipschitz is the cross-entropy's input-gradient L1 along the KL attack's steps, as for every method."""
    return trades_terms(model, x, y, ctx).output(ctx.lam)
