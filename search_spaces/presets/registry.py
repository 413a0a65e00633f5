"""The preset registry: a preset is a short function registered by name that returns a SweepSpec.

A preset's keyword parameters (with defaults) are its own knobs, such as the width configuration of a scaling
series; `resolve(name, overrides)` passes override keys that name a parameter to the function, applies the
fidelity knobs (`epochs`, `n_train`, `width_multiplier`) and replaces any other SweepSpec field.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from search_spaces.spec import SpecError, SweepSpec

Builder = Callable[..., SweepSpec]
FIDELITY = ("epochs", "n_train", "width_multiplier")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str  # which figure or table of which study it reproduces
    build: Builder

    @property
    def params(self) -> dict[str, Any]:
        """The preset's own parameters and their defaults."""
        return {k: p.default for k, p in inspect.signature(self.build).parameters.items()}


_PRESETS: dict[str, Preset] = {}


def register_preset(name: str, description: str) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        if name in _PRESETS:
            raise ValueError(f"preset {name!r} is already registered")
        _PRESETS[name] = Preset(name, description, fn)
        return fn

    return wrap


def list_presets() -> list[Preset]:
    return [_PRESETS[k] for k in sorted(_PRESETS)]


def get_preset(name: str) -> Preset:
    if name not in _PRESETS:
        raise SpecError("preset", f"unknown preset {name!r}; known: {', '.join(sorted(_PRESETS))}")
    return _PRESETS[name]


def _spec_error(e: ValidationError) -> SpecError:
    err = e.errors()[0]
    return SpecError(".".join(str(p) for p in err["loc"]) or "spec", err["msg"])


def resolve(name: str, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """The preset's spec with overrides applied: preset parameters passed to the preset, fidelity knobs
    (epochs, n_train, width_multiplier), `training` merged key by key, any other SweepSpec field replaced."""
    preset = get_preset(name)
    over = dict(overrides or {})
    unknown = [k for k in over if k not in preset.params and k not in FIDELITY and k not in SweepSpec.model_fields]
    if unknown:
        own = ", ".join(preset.params) or "none"
        raise SpecError(unknown[0], f"unknown override for preset {name!r}; its parameters: {own}; fidelity: "
                        f"{', '.join(FIDELITY)}; or any spec field")
    try:
        spec = preset.build(**{k: over.pop(k) for k in list(over) if k in preset.params})
    except ValidationError as e:
        raise _spec_error(e) from None
    data = spec.model_dump()
    data["name"] = None
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
        raise _spec_error(e) from None
