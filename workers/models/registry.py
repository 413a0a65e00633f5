"""The model registry: look a network up by name (timm-style, see style.md).

A model is a small builder function registered by decorator::

    @register_model("wrn")
    def wrn(*, depths, widths, num_classes, mean, std, in_channels, dropout, **options) -> nn.Module: ...

`build_model` validates the arguments every model shares (naming the offending field) before calling the builder;
each builder validates what is specific to it (number of stages, ...). Builders never allocate on a fixed device:
build under `with torch.device(...)` or move with `.to(device)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn

Builder = Callable[..., nn.Module]

_MODELS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register `builder` under `name` (a second registration of the same name is an error)."""

    def deco(builder: Builder) -> Builder:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = builder
        return builder

    return deco


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def build_model(
    name: str,
    *,
    depths: tuple[int, ...],
    widths: tuple[float, ...],
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    in_channels: int = 3,
    dropout: float = 0.0,
    **options: Any,
) -> nn.Module:
    """Build the registered model `name` (on the current default device, e.g. under `with torch.device("meta")`).

    Args:
        depths: blocks per stage; 0 removes a stage (see each model).
        widths: width factor per stage (channels are rounded to integers).
        num_classes: logits per example.
        mean, std: per-channel normalisation in [0, 1] pixel units (applied inside the model).
        in_channels: image channels C of the (B, C, H, W) input.
        dropout: drop probability inside the blocks (0 disables it).
        options: model-specific keyword options (e.g. `sub_block1` for "wrn"), passed to the builder.
    Raises:
        ValueError: unknown name, or an invalid argument (the message names the field).
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    check_common(depths=depths, widths=widths, num_classes=num_classes, in_channels=in_channels, dropout=dropout)
    return _MODELS[name](
        depths=tuple(depths),
        widths=tuple(widths),
        num_classes=num_classes,
        mean=tuple(mean),
        std=tuple(std),
        in_channels=in_channels,
        dropout=dropout,
        **options,
    )


def check_common(
    *, depths: tuple[int, ...], widths: tuple[float, ...], num_classes: int, in_channels: int, dropout: float
) -> None:
    """Validate the arguments all models share; each message names its field."""
    if len(depths) == 0:
        raise ValueError("depths must not be empty")
    if any(isinstance(d, bool) or int(d) != d or d < 0 for d in depths):
        raise ValueError(f"depths must be integers >= 0, got {list(depths)}")
    if all(d == 0 for d in depths):
        raise ValueError(f"depths must have at least one stage > 0, got {list(depths)}")
    if len(widths) == 0:
        raise ValueError("widths must not be empty")
    if any(not math.isfinite(w) or w <= 0 for w in widths):
        raise ValueError(f"widths must be finite and > 0, got {list(widths)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def check_length(field: str, values: tuple[Any, ...], expected: int | tuple[int, ...], model: str) -> None:
    """ValueError naming `field` when `len(values)` is not (one of) `expected`."""
    allowed = (expected,) if isinstance(expected, int) else expected
    if len(values) not in allowed:
        want = " or ".join(str(n) for n in allowed)
        raise ValueError(f"{field} for {model!r} must have {want} entries, got {len(values)}: {list(values)}")


def scale_channels(base: int, width: float, field: str = "widths") -> int:
    """`base * width` rounded half up to an integer channel count (>= 1, else ValueError naming `field`).

    Half up rather than Python's round-half-to-even (16 * 0.15625 = 2.5 -> 3), so a channel count never depends
    on the parity of its integer part.
    """
    channels = int(math.floor(base * width + 0.5))
    if channels < 1:
        raise ValueError(f"{field} {width} gives {base} * {width} < 0.5 channels")
    return channels
