"""The demo sweep of `robustgrid demo`: a small real sweep, minutes on CPU."""

from __future__ import annotations

from search_spaces.presets.registry import register_preset
from search_spaces.spec import SweepSpec


@register_preset("demo", "A small real sweep for `robustgrid demo`: four tiny stage-wise WRNs on cifar10-jpeg, minutes on CPU.")
def demo() -> SweepSpec:
    return SweepSpec(
        description="Demo: four tiny stage-wise WRNs (d1-1-1, widths 1-2 per stage), SAT at eps 8/255, PGD-3 training, "
                    "PGD-20 evaluation (the studies' protocol, so the published references sit on the same axes).",
        depths=[[1], [1], [1]],
        widths=[[1, 2], [1], [1, 2]],
        dataset="cifar10-jpeg",
        n_train=[2000],
        training={
            "epochs": 3,
            "batch_size": 128,
            "val_size": 500,
            "n_test": 500,
            "lr": 0.05,
            "train_attack": {"steps": 3, "step_size": 4 / 255},
            "eval_attack": {"steps": 20, "step_size": None},
        },
    )
