"""Study B: Wu et al., "Do Wider Neural Networks Really Help Adversarial Robustness?", NeurIPS 2021
(arXiv:2010.01279). WRN-34-k (d5-5-5, uniform width k) on CIFAR-10, lambda grids per width, and WAR.

Width k is the `gamma` axis over w1-1-1, so the width multiplier override scales k. Fidelity:
- TRADES (lambda = beta in {6, ..., 21}): the TRADES reference script (github.com/yaodongyu/TRADES
  `train_trades_cifar10.py`): 76 epochs, lr 0.1, x0.1 from its 1-indexed epoch 75 (our 0-indexed epoch 74:
  milestone 74/76, so an `epochs` override keeps the shape), weight decay 2e-4, batch 128, no gradient clipping,
  PGD-10 with step 0.007 (at 8/255; relative to eps) from x + 0.001 N(0, 1) at 8/255 (the catalog's TRADES
  defaults).
- generalised AT (lambda in {1.0, ..., 2.0}): science.md's defaults (100 epochs, x0.1 at 75% and 90%, PGD-10
  step eps/4 = 2/255, grad-norm clip 5); the digest names no other schedule for it.
"""

from __future__ import annotations

from typing import Any, Literal

from search_spaces.presets.registry import register_preset
from search_spaces.spec import SpecError, SweepSpec

CITE = "Wu et al. 2021 (NeurIPS, 'Do wider neural networks really help adversarial robustness?')"
WIDTHS_K = (1, 5, 10)
LAMBDAS = {"trades": [6.0, 9.0, 12.0, 15.0, 18.0, 21.0], "gat": [1.0, 1.25, 1.5, 1.75, 2.0]}
SCHEDULES: dict[str, dict[str, Any]] = {
    "trades": {"epochs": 76, "schedule": {"kind": "piecewise", "milestones": [74 / 76], "gamma": 0.1},
               "grad_clip": None},  # the TRADES reference script does not clip gradients
    "gat": {"epochs": 100, "schedule": {"kind": "piecewise", "milestones": [0.75, 0.9], "gamma": 0.1}},
}
OPTIM = {"lr": 0.1, "momentum": 0.9, "weight_decay": 2e-4, "batch_size": 128}


def _wrn34(description: str, method: str, ks: Any, *, lam: list[float] | None = None, **training: Any) -> SweepSpec:
    base = "gat" if method.endswith("gat") else "trades"
    return SweepSpec(
        description=f"{CITE}: {description}", depths=[[5], [5], [5]], widths=[[1], [1], [1]],
        gamma=[float(k) for k in ks], method=[method], lam=lam, training=OPTIM | SCHEDULES[base] | training,
    )


@register_preset("wu2021-lambda-trades", f"{CITE}, TRADES lambda (beta) x width: WRN-34-k, k in {{1, 5, 10}} x "
                 f"lambda in {LAMBDAS['trades']} (18 runs; robust/natural accuracy and stability vs lambda per width).")
def lambda_trades(ks: Any = WIDTHS_K) -> SweepSpec:
    return _wrn34("TRADES lambda grid on WRN-34-k, 76 epochs.", "trades", ks, lam=LAMBDAS["trades"])


@register_preset("wu2021-lambda-at", f"{CITE}, generalised AT lambda x width: WRN-34-k, k in {{1, 5, 10}} x lambda "
                 f"in {LAMBDAS['gat']} (15 runs; the AT counterpart of the TRADES lambda grid).")
def lambda_at(ks: Any = WIDTHS_K) -> SweepSpec:
    return _wrn34("generalised AT lambda grid on WRN-34-k, 100 epochs.", "gat", ks, lam=LAMBDAS["gat"])


@register_preset("wu2021-war", f"{CITE}, Width Adjusted Regularisation: phase 'tune' (default) = the lambda grid on "
                 "the thin WRN-34-1 (6 TRADES runs); phase 'war' = WAR on WRN-34-5 and WRN-34-10 with zeta from the "
                 "tuning sweep (`robustgrid war-zeta SWEEP`) or given (2 runs). WAR's cost against the 18-run grid.")
def war(phase: Literal["tune", "war"] = "tune", zeta: float | None = None,
        regulariser: Literal["trades", "gat"] = "trades", thin_k: float = 1, wide_ks: Any = (5, 10)) -> SweepSpec:
    """tune: `regulariser`'s lambda grid at width thin_k; war: war_<regulariser> at each of wide_ks with
    lambda_0 = 0, alpha = 0.1 and the target ratio `zeta` (natural risk / robust regulariser of the best thin run
    at its last epoch)."""
    if regulariser not in LAMBDAS:
        raise SpecError("regulariser", f"expected 'trades' or 'gat', got {regulariser!r}")
    if phase == "tune":
        return _wrn34(f"WAR phase 1, {regulariser} lambda grid on the thin WRN-34-{thin_k:g}.", regulariser, [thin_k],
                      lam=LAMBDAS[regulariser])
    if phase != "war":
        raise SpecError("phase", f"expected 'tune' or 'war', got {phase!r}")
    if zeta is None or not float(zeta) > 0:
        raise SpecError("zeta", f"phase 'war' needs zeta > 0 (got {zeta!r}): run phase 'tune', then "
                        "`robustgrid war-zeta <tuning sweep>` prints it")
    return _wrn34(f"WAR phase 2, war_{regulariser} with zeta={float(zeta):g} on WRN-34-k, k in {list(wide_ks)}.",
                  f"war_{regulariser}", wide_ks, zeta=float(zeta), war_alpha=0.1)


def zeta_from_tuning(final_rows: list[dict[str, Any]], epoch_rows: list[dict[str, Any]], *,
                     attack: str) -> tuple[float, int]:
    """(zeta, trial) of a finished tuning sweep: the trial with the highest robust accuracy at its best
    checkpoint under `attack` (a stored attack key, e.g. pgd20), and its natural_risk / robust_reg at its last
    epoch (WAR's ratio 'at convergence').

    final_rows / epoch_rows: result rows (db.results.query_results, kind 'final' / 'epoch') of the sweep."""
    best = [r for r in final_rows if r.get("checkpoint") == "best" and r.get("attack") == attack
            and r.get("robust_acc") is not None]
    if not best:
        raise SpecError("sweep", f"no final {attack} results at the best checkpoint: is the tuning sweep finished?")
    trial = max(best, key=lambda r: r["robust_acc"])["trial"]
    epochs = [r for r in epoch_rows if r.get("trial") == trial and r.get("robust_reg") is not None]
    if not epochs:
        raise SpecError("sweep", f"trial {trial} has no epoch rows with the loss decomposition")
    last = max(epochs, key=lambda r: r["epoch"])
    if not last["robust_reg"] > 0:
        raise SpecError("sweep", f"trial {trial} ends with robust_reg {last['robust_reg']}: zeta is undefined")
    return last["natural_risk"] / last["robust_reg"], trial
