"""Study A: Huang et al., "Exploring Architectural Ingredients of Adversarially Robust Deep Neural Networks",
NeurIPS 2021 (arXiv:2110.03825, github.com/HanxunH/RobustWRN). Stage-wise WRN grids, SAT (PGD-10) on CIFAR-10.

Fidelity (RobustWRN `configs/config-WRN-34-R/WRN-34-R-madrys.yaml`): 100 epochs, SGD lr 0.1 momentum 0.9,
weight decay 2e-4, batch 128, grad-norm clip 5, lr x0.1 at epochs 75 and 90; PGD-10 at 8/255 with step eps/4 = 2/255
and a random start (the SAT defaults of TrialConfig and the catalog). Milestones are fractions of the epochs, so
an `epochs` override keeps the schedule's shape.
"""

from __future__ import annotations

import functools
from typing import Any

from search_spaces.presets.registry import register_preset
from search_spaces.spec import SpecError, SweepSpec

DEPTHS = [1, 3, 5, 7, 9]
WIDTHS = [2, 4, 6, 8, 10]
SCALES = [0.25, 0.5, 1.0, 1.5, 2.0]
HUANG: dict[str, Any] = {
    "epochs": 100, "lr": 0.1, "momentum": 0.9, "weight_decay": 2e-4, "batch_size": 128, "grad_clip": 5.0,
    "schedule": {"kind": "piecewise", "milestones": [0.75, 0.9], "gamma": 0.1},
}  # fmt: skip
CITE = "Huang et al. 2021 (NeurIPS, 'Exploring architectural ingredients of adversarially robust DNNs')"


def _huang(description: str, **axes: Any) -> SweepSpec:
    return SweepSpec(description=f"{CITE}: {description} SAT PGD-10 at 8/255, 100 epochs.", training=HUANG, **axes)


def _stages(configs: Any, field: str) -> list[list[float]]:
    """Per-stage lists (the spec's format), checked to have 3 stages."""
    stages = [list(s) if isinstance(s, list | tuple) else [s] for s in configs]
    if len(stages) != 3 or not all(stages):
        raise SpecError(field, f"expected 3 non-empty per-stage lists (the product gives the configs), got {configs!r}")
    return stages


@register_preset("huang2021-depth-125", f"{CITE}, stage-wise depth experiment: every (D1,D2,D3) in {{1,3,5,7,9}}^3 "
                 "at w10-10-10 (125 WRNs).")
def depth_125() -> SweepSpec:
    return _huang("the 125-network depth grid at widths 10-10-10.", depths=[DEPTHS, DEPTHS, DEPTHS],
                  widths=[[10], [10], [10]])


def _one_stage(axis: str, stage: int) -> SweepSpec:
    values, fixed = (DEPTHS, 5) if axis == "depths" else (WIDTHS, 10)
    grid: list[list[Any]] = [[fixed], [fixed], [fixed]]
    grid[stage] = list(values)
    other: dict[str, Any] = {"depths": [[5], [5], [5]], "widths": [[10], [10], [10]], axis: grid}
    return _huang(f"{axis[:-1]} of stage {stage + 1} in {values}, the other stages at {fixed}.", **other)


for _s in range(3):
    register_preset(f"huang2021-depth-stage{_s + 1}",
                    f"{CITE}, per-stage depth experiment: D{_s + 1} in {DEPTHS}, others 5, widths 10 (5 WRNs).")(
        functools.partial(_one_stage, "depths", _s))
    register_preset(f"huang2021-width-stage{_s + 1}",
                    f"{CITE}, per-stage width experiment: W{_s + 1} in {WIDTHS}, others 10, depths 5 (5 WRNs).")(
        functools.partial(_one_stage, "widths", _s))


@register_preset("huang2021-depth-width-25", f"{CITE}, depth x width combinations: the top-5 depth configs x the "
                 "top-5 width configs (25 WRNs). Parameters top_depths / top_widths; the defaults are placeholders "
                 "(the stage-3 series), not the paper's ranking: pass your top-5 from the finished grids.")
def depth_width_25(top_depths: Any = ((5,), (5,), (1, 3, 5, 7, 9)),
                   top_widths: Any = ((10,), (10,), (2, 4, 6, 8, 10))) -> SweepSpec:
    """top_depths / top_widths are per-stage lists whose product is the top-5 (the spec's per-stage format);
    the defaults vary the last stage (the study's 'reduce the last stage' finding), d5-5-x and w10-10-x."""
    return _huang("the top-5 depth configs x the top-5 width configs.", depths=_stages(top_depths, "top_depths"),
                  widths=_stages(top_widths, "top_widths"))


@register_preset("huang2021-scaling", f"{CITE}, width-scaling series: a width config x gamma in {SCALES} (5 WRNs; "
                 "default w10-10-4 at d5-5-5, whose gamma 2 is WRN-34-R = w20-20-8, RobustWRN's README).")
def scaling(width: Any = (10, 10, 4), depth: Any = (5, 5, 5)) -> SweepSpec:
    """`width` (W1, W2, W3) and `depth` (D1, D2, D3) of the scaled configuration."""
    widths, depths = _stages(width, "width"), _stages(depth, "depth")
    if any(len(s) != 1 for s in widths + depths):
        raise SpecError("width", f"one configuration expected, got width={width!r}, depth={depth!r}")
    return _huang(f"w{'-'.join(str(w[0]) for w in widths)} scaled by gamma in {SCALES}.", depths=depths,
                  widths=widths, gamma=SCALES)
