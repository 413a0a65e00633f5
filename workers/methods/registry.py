"""Training-method registry: `@register_method("gat")` on a function `(model, x, y, ctx) -> MethodOutput`."""

from __future__ import annotations

from collections.abc import Callable

from workers.methods.base import MethodFn

_METHODS: dict[str, MethodFn] = {}


def register_method(name: str) -> Callable[[MethodFn], MethodFn]:
    def deco(fn: MethodFn) -> MethodFn:
        if name in _METHODS:
            raise ValueError(f"method '{name}' is already registered")
        _METHODS[name] = fn
        return fn

    return deco


def get_method(name: str) -> MethodFn:
    if name not in _METHODS:
        raise ValueError(f"unknown method '{name}'; known: {', '.join(list_methods())}")
    return _METHODS[name]


def list_methods() -> list[str]:
    return sorted(_METHODS)
