"""Query-string filters over result fields: typed, validated, named in errors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from search_spaces.spec import SpecError

INT_FIELDS = {"trial", "params", "flops", "n_train", "seed", "epoch"}
FLOAT_FIELDS = {"lam", "eps", "clean_acc", "robust_acc", "stability", "emp_lipschitz", "clean_loss_train",
                "clean_loss_test", "adv_loss_train", "adv_loss_test", "natural_risk", "robust_reg",
                "local_lipschitz", "lam_t", "gpu_seconds"}
STR_FIELDS = {"sweep", "arch", "depths", "widths", "method", "norm", "dataset", "checkpoint", "attack", "status", "error"}
FILTER_FIELDS = INT_FIELDS | FLOAT_FIELDS | STR_FIELDS
NUMERIC_FIELDS = INT_FIELDS | FLOAT_FIELDS
# metrics whose natural direction is "larger is better" (Pareto defaults); every other metric is minimised
MAXIMIZED = {"clean_acc", "robust_acc", "stability"}


def _coerce(field: str, raw: str) -> Any:
    try:
        if field in INT_FIELDS:
            return int(raw)
        if field in FLOAT_FIELDS:
            return float(raw)
    except ValueError:
        raise SpecError(field, f"{raw!r} is not a number") from None
    return raw


def parse_filters(items: Iterable[tuple[str, str]], *, reserved: set[str]) -> dict[str, Any]:
    """`?arch=a&arch=b&eps=0.0313` -> {"arch": ["a", "b"], "eps": 0.0313}. Unknown fields are an error."""
    out: dict[str, list[Any]] = {}
    for key, raw in items:
        if key in reserved:
            continue
        if key not in FILTER_FIELDS:
            raise SpecError(key, f"unknown filter field; known: {', '.join(sorted(FILTER_FIELDS))}")
        for part in raw.split(","):
            out.setdefault(key, []).append(_coerce(key, part))
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}
