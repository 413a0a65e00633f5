"""MART (Wang et al., 2020): misclassification-aware boosted CE on x' + lambda * (1 - p_y(x))-weighted KL."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.methods.base import MethodContext, MethodOutput, run_attack
from workers.methods.registry import register_method
from workers.methods.trades import kl_per_example


@register_method("mart")
def mart(model: nn.Module, x: Tensor, y: Tensor, ctx: MethodContext) -> MethodOutput:
    """As the reference `mart_loss` (github.com/YisenWang/MART) [https://openreview.net/forum?id=rklOg6EFwS]:

        BCE(x') = CE(f(x'), y) + NLL(log(1.0001 - p(x')), y'),  y' = the most likely wrong class under x'
        KL_w    = mean_b KL(p(x)_b || p(x')_b) * (1.0000001 - p(x)_{b,y})
        loss    = BCE(x') + lam * KL_w      (lam is MART's beta, 6 in the reference)

    with x' = ctx.attack(x) (the reference: CE-PGD, step 0.007, start x + 0.001 N(0, 1)) in ctx.bn_mode; gradient
    through p(x) in both the KL and its weight, as in the reference. natural_risk is CE(f(x), y) (reported only),
    robust_reg is KL_w. The reference's log(p + 1e-12) in the KL is replaced by log-softmax (same value, no log 0).
    """
    x_adv, lip = run_attack(model, x, y, ctx)
    clean_logits = model(x).float()  # (B, K)
    adv_logits = model(x_adv).float()
    adv_probs = F.softmax(adv_logits, dim=1)
    top2 = torch.argsort(adv_probs, dim=1)[:, -2:]  # (B, 2)
    new_y = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    bce = F.cross_entropy(adv_logits, y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), new_y)
    nat_probs = F.softmax(clean_logits, dim=1)
    true_probs = nat_probs.gather(1, y[:, None]).squeeze(1)  # (B,)
    kl_w = (kl_per_example(clean_logits, adv_logits) * (1.0000001 - true_probs)).mean()
    return MethodOutput(loss=bce + ctx.lam * kl_w, natural_risk=F.cross_entropy(clean_logits.detach(), y),
                        robust_reg=kl_w.detach(), lam=ctx.lam, local_lipschitz=lip,
                        clean_logits=clean_logits.detach(), adv_logits=adv_logits.detach())
