"""Study C: Xing, Song and Cheng, "Phase Transition from Clean Training to Adversarial Training", NeurIPS 2022.
The critical attack strength eps*: a clean run (its clean test loss R0) and adversarial runs over an eps grid,
at two training-set sizes; db/epsilon_star.py turns the finished sweep into eps*.

Assumptions (the digest fixes the grid, not the network or the schedule): PreActResNet-18 (the network science.md
names for studies B and C; override `model`/`depths`/`widths` for others), SAT with PGD-10 step eps/4 (science.md
section 4; 2/255 at 8/255, following the eps grid), 100 epochs x0.1 at 75% and 90%, SGD lr 0.1, weight decay 2e-4, batch 128. n_train "50k" is the whole
training split less the 1,000 validation images (n_train None = 49,000), since per-epoch selection needs them.

eps 0 is the clean run: the method axis is zipped with the eps axis, so eps 0 expands to method `clean`
(no attack, no attack cost) and every other eps to the adversarial method.
"""

from __future__ import annotations

from typing import Any, Literal

from search_spaces.config import TrialConfig
from search_spaces.presets.registry import register_preset
from search_spaces.spec import SpecError, SweepSpec

CITE = "Xing et al. 2022 (NeurIPS, 'Phase transition from clean training to adversarial training')"
EPS_255 = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0)  # the eps grid, in 1/255 pixel units
N_TRAIN: list[int | None] = [10_000, None]  # 10k subset and the whole split (49k after validation)
PREACT18: dict[str, Any] = {"model": "preactresnet18", "depths": [[2], [2], [2], [2]], "widths": [[1], [1], [1], [1]]}
XING: dict[str, Any] = {
    "epochs": 100, "lr": 0.1, "momentum": 0.9, "weight_decay": 2e-4, "batch_size": 128,
    "schedule": {"kind": "piecewise", "milestones": [0.75, 0.9], "gamma": 0.1},
}  # fmt: skip
FINETUNE: dict[str, Any] = {"epochs": 1, "lr": 0.01, "schedule": {"kind": "constant"}}  # assumed: 1 short epoch


def _eps(eps_255: Any, field: str) -> list[float]:
    values = [float(e) for e in eps_255]
    if not values or any(not 0 <= e <= 255 for e in values):
        raise SpecError(field, f"eps values in 1/255 units within [0, 255] expected, got {list(eps_255)!r}")
    return [e / 255 for e in values]


@register_preset("xing2022-epsilon", f"{CITE}, eps* from scratch: the clean run (eps 0) and SAT at eps in "
                 f"{{0.5, 1, 2, 4, 8, 12, 16}}/255, n_train 10k and 50k (16 runs; adversarial training loss vs eps "
                 "against the clean test loss R0).")
def epsilon(method: str = "sat", eps_255: Any = EPS_255) -> SweepSpec:
    """`method` trains every eps > 0 (sat, trades, mart, ...); eps 0 is always the clean run."""
    eps = _eps(eps_255, "eps_255")
    return SweepSpec(
        description=f"{CITE}: clean run + {method} over eps {list(eps_255)}/255 at n_train 10k and 50k.",
        method=["clean" if e == 0 else method for e in eps], eps=eps, zip=[["method", "eps"]], n_train=N_TRAIN,
        training=XING, **PREACT18,
    )


@register_preset("xing2022-epsilon-fast", f"{CITE}, fast eps* approximation: phase 'clean' (default) = the clean "
                 "runs at n_train 10k and 50k (2 runs, the same configs as xing2022-epsilon's); phase 'finetune' = "
                 "short adversarial fine-tuning of one clean model (init_from='trial:<id>') at small eps "
                 "{0.5, 1, 2}/255 with PGD or FGSM (3 runs), extrapolated linearly to the crossing.")
def epsilon_fast(phase: Literal["clean", "finetune"] = "clean", init_from: str | None = None,
                 attack: Literal["pgd", "fgsm"] = "pgd", eps_255: Any = (0.5, 1.0, 2.0)) -> SweepSpec:
    """finetune: from the clean model `init_from` (the 10k run by default; set n_train to match another),
    `attack` training (sat = PGD-10, or fgsm) for FINETUNE's 1 epoch at a constant lr 0.01 per eps."""
    if phase == "clean":
        return SweepSpec(description=f"{CITE}: fast approximation, phase 1: the clean runs.", method=["clean"],
                         eps=[0.0], n_train=N_TRAIN, training=XING, **PREACT18)
    if phase != "finetune":
        raise SpecError("phase", f"expected 'clean' or 'finetune', got {phase!r}")
    if "init_from" not in TrialConfig.model_fields:  # pragma: no cover - before fine-tuning support
        raise SpecError("phase", "'finetune' needs TrialConfig.init_from, which this version lacks")
    if not init_from:
        raise SpecError("init_from", "phase 'finetune' needs init_from='trial:<id>' of a finished clean run")
    if attack not in ("pgd", "fgsm"):
        raise SpecError("attack", f"expected 'pgd' or 'fgsm', got {attack!r}")
    return SweepSpec(
        description=f"{CITE}: fast approximation, phase 2: {attack} fine-tuning of {init_from} at eps "
                    f"{list(eps_255)}/255.",
        method=["sat" if attack == "pgd" else "fgsm"], eps=_eps(eps_255, "eps_255"), n_train=[N_TRAIN[0]],
        training=XING | FINETUNE | {"init_from": init_from}, **PREACT18,
    )
