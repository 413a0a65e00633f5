"""Width Adjusted Regularisation (WAR): lambda adapted each mini-batch towards the ratio zeta = l_nat / l_rob
recorded on a thin network, on top of GAT (war_gat) or TRADES (war_trades)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from workers.methods.base import MethodContext, MethodOutput
from workers.methods.gat import Terms, gat_terms
from workers.methods.registry import register_method
from workers.methods.trades import trades_terms


def war_lambda(state: dict[str, Any], *, l_nat: float, l_rob: float, zeta: float, alpha: float) -> float:
    """lambda_t = max(lambda_{t-1} + alpha * (zeta - l_nat / l_rob), 0), lambda_0 = 0; stored in state['lam_t'].
    l_rob is >= 0 for both regularisers; at l_rob == 0 the ratio is taken as +inf, so lambda_t = 0."""
    ratio = l_nat / l_rob if l_rob > 0 else float("inf")
    lam = max(float(state.get("lam_t", 0.0)) + alpha * (zeta - ratio), 0.0)
    state["lam_t"] = lam
    return lam


def _war(terms: Terms, ctx: MethodContext) -> MethodOutput:
    """Per mini-batch: update lambda_t first from this batch's (l_nat, l_rob), then step on l_nat + lambda_t l_rob."""
    if ctx.zeta is None:
        raise ValueError("WAR needs ctx.zeta (cfg.zeta: natural risk / robust regulariser of the thin network)")
    lam = war_lambda(ctx.state, l_nat=terms.l_nat.item(), l_rob=terms.l_rob.item(), zeta=ctx.zeta,
                     alpha=ctx.war_alpha)
    return terms.output(lam)


@register_method("war_gat")
def war_gat(model: nn.Module, x: Tensor, y: Tensor, ctx: MethodContext) -> MethodOutput:
    """WAR on GAT's terms: l_nat = L(x), l_rob = max(L(x') - L(x), 0) (batch mean, clipped per example)."""
    return _war(gat_terms(model, x, y, ctx), ctx)


@register_method("war_trades")
def war_trades(model: nn.Module, x: Tensor, y: Tensor, ctx: MethodContext) -> MethodOutput:
    """WAR on TRADES' terms: l_nat = CE(f(x), y), l_rob = KL(softmax f(x) || softmax f(x'))."""
    return _war(trades_terms(model, x, y, ctx), ctx)
