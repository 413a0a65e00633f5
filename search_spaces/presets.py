"""Named sweeps: the grids of the studies (science.md) and a small demo.

A preset is a five-line function registered by name that returns a SweepSpec at the study's fidelity. Users
scale it down with fidelity overrides (`epochs`, `n_train`, `width_multiplier`) or override any spec field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from search_spaces.spec import SpecError, SweepSpec

DEPTHS = [1, 3, 5, 7, 9]
WIDTHS = [2, 4, 6, 8, 10]
HUANG = {"epochs": 100}  # Huang et al. 2021: 100 epochs, lr x0.1 at 75% and 90% (the TrialConfig default)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str  # which figure of which study it reproduces
    build: Callable[[], SweepSpec]


_PRESETS: dict[str, Preset] = {}


def register_preset(name: str, description: str) -> Callable[[Callable[[], SweepSpec]], Callable[[], SweepSpec]]:
    def wrap(fn: Callable[[], SweepSpec]) -> Callable[[], SweepSpec]:
        _PRESETS[name] = Preset(name, description, fn)
        return fn

    return wrap


def list_presets() -> list[Preset]:
    return [_PRESETS[k] for k in sorted(_PRESETS)]


def get_preset(name: str) -> Preset:
    if name not in _PRESETS:
        raise SpecError("preset", f"unknown preset {name!r}; known: {', '.join(sorted(_PRESETS))}")
    return _PRESETS[name]


FIDELITY = ("epochs", "n_train", "width_multiplier")


def resolve(name: str, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """The preset's spec with overrides applied: fidelity knobs (epochs, n_train, width_multiplier), `training`
    merged key by key, any other SweepSpec field replaced."""
    spec = get_preset(name).build()
    data = spec.model_dump()
    data["name"] = None
    over = dict(overrides or {})
    training = dict(data["training"])
    if "epochs" in over:
        training["epochs"] = over.pop("epochs")
    training.update(over.pop("training", {}) or {})
    if "width_multiplier" in over:
        mult = float(over.pop("width_multiplier"))
        if mult <= 0:
            raise SpecError("width_multiplier", f"must be > 0, got {mult}")
        data["gamma"] = [g * mult for g in data["gamma"]]
    data.update(over)
    data["training"] = training
    try:
        return SweepSpec(**data)
    except ValidationError as e:
        err = e.errors()[0]
        raise SpecError(".".join(str(p) for p in err["loc"]) or "spec", err["msg"]) from None


def _spec(description: str, **kw: Any) -> SweepSpec:
    return SweepSpec(description=description, **kw)


@register_preset("demo", "A small real sweep for `robustgrid demo`: four stage-wise WRNs on cifar10-jpeg, minutes on CPU.")
def demo() -> SweepSpec:
    return _spec(
        "Demo: four tiny stage-wise WRNs (d1-1-1, widths 1-2 per stage), SAT at eps 8/255, PGD-3 training.",
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
            "eval_attack": {"steps": 10, "step_size": None},
        },
    )


@register_preset("huang2021-depth-125", "Huang et al. 2021, depth grid: all (D1,D2,D3) in {1,3,5,7,9}^3 at w10-10-10 (125 WRNs).")
def huang_depth() -> SweepSpec:
    return _spec(
        "Huang et al. 2021 (Exploring architectural ingredients of adversarially robust deep neural networks), "
        "the 125-network depth grid at widths 10-10-10, SAT PGD-10 at 8/255.",
        depths=[DEPTHS, DEPTHS, DEPTHS],
        widths=[[10], [10], [10]],
        training=HUANG,
    )


def _one_stage(axis: str, stage: int, values: list[int], fixed: float) -> SweepSpec:
    grid: list[list[Any]] = [[fixed], [fixed], [fixed]]
    grid[stage] = list(values)
    other = {"depths": [[5], [5], [5]], "widths": [[10], [10], [10]]}
    other[axis] = grid
    return _spec(
        f"Huang et al. 2021, {axis} of stage {stage + 1} in {values} with the other stages fixed "
        f"({'depth 5' if axis == 'depths' else 'width 10'}).",
        training=HUANG,
        **other,
    )


for _s in range(3):
    register_preset(f"huang2021-depth-stage{_s + 1}", f"Huang et al. 2021: depth of stage {_s + 1} in {DEPTHS}, others 5.")(
        lambda s=_s: _one_stage("depths", s, DEPTHS, 5)
    )
    register_preset(f"huang2021-width-stage{_s + 1}", f"Huang et al. 2021: width of stage {_s + 1} in {WIDTHS}, others 10.")(
        lambda s=_s: _one_stage("widths", s, WIDTHS, 10)
    )
