"""The grammar of the API's free-text query parameters (sort, attack keys, metric names, directions) as regular
expressions the OpenAPI schema states, so a client (and schemathesis) knows a valid value before it asks, and the
one sentence a 422 says when a value does not match (FastAPI's own "String should match pattern ..." names a regex,
not the mistake)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from db.contract import ATTACK_KEY_PATTERN, FIXED_ATTACKS, NUMERIC_FIELDS, SCALAR_FIELDS


def _names(names: Iterable[str]) -> str:
    return "|".join(sorted(names, key=lambda n: (-len(n), n)))  # longest first: `clean_acc_se` before `clean_acc`


_DIRECTION = "true|false|max|min|1|0|True|False|Max|Min|TRUE|FALSE|MAX|MIN"
NUMERIC_FIELD_PATTERN = rf"^(?:{_names(NUMERIC_FIELDS)})$"
SORT_PATTERN = rf"^(?: *[+-]?(?:{_names(SCALAR_FIELDS)}) *(?:, *[+-]?(?:{_names(SCALAR_FIELDS)}) *)*)?$"
DIRECTIONS_PATTERN = rf"^(?:{_DIRECTION})(?:,(?:{_DIRECTION}))*$"


def _sort_reason(value: str) -> str:
    bad = next((p.strip().lstrip("+-") for p in value.split(",") if p.strip().lstrip("+-") not in SCALAR_FIELDS),
               value)
    return f"{bad!r} is not a scalar result field (sort takes [-]field,[-]field..., e.g. -robust_acc,params)"


REASONS: dict[str, Callable[[str], str]] = {
    SORT_PATTERN: _sort_reason,
    ATTACK_KEY_PATTERN: lambda v: (f"{v!r} is not an attack key; keys are pgd<steps> or cw<steps> (e.g. pgd20, "
                                   f"cw20) or one of {', '.join(FIXED_ATTACKS)}"),
    NUMERIC_FIELD_PATTERN: lambda v: f"{v!r} is not a numeric result field",
    DIRECTIONS_PATTERN: lambda v: f"{v!r} is not a comma-separated list of true/false/max/min",
}


def mismatch_reason(pattern: str, value: object) -> str | None:
    """The sentence for `value` not matching one of these patterns; None for another pattern."""
    reason = REASONS.get(pattern)
    return None if reason is None else reason(str(value))
