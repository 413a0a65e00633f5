"""Query-string filters over result fields, typed by the contract (db.contract.ResultRow), named in errors.

Floats are matched as people write them: `eps=8/255` is that fraction (within 1e-9), `eps=0.0314` matches to the
precision written (+- half a unit of its last decimal, so it finds the 8/255 = 0.031372... rows), and a number
written without a decimal point (`lam=6`) matches exactly. `attack` takes canonical keys (pgd20, cw20, fgsm,
autoattack). A comma separates alternatives: `arch=a,b`.

Ranges on numeric fields are a suffix on the field name, the same in a URL and in the CLI's `--where`:
`robust_acc__gte=0.5` (>=), `__gt` (>), `__lte` (<=), `__lt` (<), e.g. `?params__lt=1e6&robust_acc__gte=0.5` or
`--where params__lt=1e6 --where robust_acc__gte=0.5`. A range bound is the number as written (`8/255` too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from db.contract import FILTER_FIELDS, FLOAT_FIELDS, INT_FIELDS, LIST_FIELDS, NUMERIC_FIELDS, check_attack_key
from db.fields import INT64_MAX, INT64_MIN, fits_int64
from db.results import FLOAT_TOLERANCE, Approx, split_range
from search_spaces.spec import SpecError
from service.errors import short_input

MAX_NUMBER_CHARS = 100  # a filter's number is at most this long (a longer one is no number anyone wrote)
MAX_EXPONENT = 400  # |decimal exponent| of a filter's number: beyond a float's range (about 1e+-308) either way


def _decimal(text: str) -> Decimal:
    dec = Decimal(text)
    if not dec.is_finite():
        raise InvalidOperation
    return dec


def parse_float(field: str, raw: str) -> Approx:
    """`8/255` -> the fraction (tight); `0.0314` -> +-0.00005; `1e-3` -> +-0.0005; `6` -> exactly 6. A number
    beyond a 64-bit float's range (`1e309`) is refused naming the field, like one that is not a number."""
    text = raw.strip()
    try:
        if len(text) > MAX_NUMBER_CHARS:
            raise InvalidOperation
        parts = [_decimal(p) for p in text.split("/", 1)]
    except (InvalidOperation, ValueError):
        raise SpecError(field, f"{short_input(raw)!r} is not a number (write 0.0314, 8/255 or 3e-2)") from None
    if any(p and abs(p.adjusted()) > MAX_EXPONENT for p in parts):  # (Fraction(1e999999999) would take minutes)
        raise SpecError(field, f"{short_input(raw)!r} is beyond the range of a 64-bit float (about 1.8e308)")
    if len(parts) == 2:
        if not parts[1]:
            raise SpecError(field, f"{short_input(raw)!r} divides by zero")
        try:
            value = float(Fraction(parts[0]) / Fraction(parts[1]))
        except OverflowError:  # beyond a float
            value = math.inf
        return _finite(field, raw, value, FLOAT_TOLERANCE * max(1.0, abs(value)))
    dec = parts[0]
    value = float(dec)
    exponent = int(dec.as_tuple().exponent)  # type: ignore[arg-type]
    if exponent >= 0 and "e" not in text.lower():  # written without a decimal point: exact
        return _finite(field, raw, value, FLOAT_TOLERANCE * max(1.0, abs(value)))
    return _finite(field, raw, value, 0.5 * 10.0 ** min(exponent, 308))


def _finite(field: str, raw: str, value: float, tol: float) -> Approx:
    if not (math.isfinite(value) and math.isfinite(tol)):
        raise SpecError(field, f"{short_input(raw)!r} is beyond the range of a 64-bit float (about 1.8e308)")
    return Approx(value, tol)


def _coerce(field: str, raw: str) -> Any:
    if field in FLOAT_FIELDS:
        return parse_float(field, raw)
    if field in INT_FIELDS:
        try:
            value = int(raw) if len(raw) <= MAX_NUMBER_CHARS else None
        except ValueError:
            value = None
        if value is None:
            raise SpecError(field, f"{short_input(raw)!r} is not an integer")
        if not fits_int64(value):
            raise SpecError(field, f"{raw!r} is outside the database's 64-bit integer range "
                                   f"[{INT64_MIN}, {INT64_MAX}]")
        return value
    if field == "attack":
        try:
            return check_attack_key(raw)
        except ValueError as e:
            raise SpecError(field, str(e)) from None
    return raw


def parse_filters(items: Iterable[tuple[str, str]], *, reserved: set[str]) -> dict[str, Any]:
    """`?arch=a&arch=b&eps=8/255` -> {"arch": ["a", "b"], "eps": Approx(0.03137..., 1e-9)}. Unknown fields
    and list-valued fields are errors naming the field."""
    out: dict[str, list[Any]] = {}
    for key, raw in items:
        if key in reserved:
            continue
        field, op = split_range(key)
        if op is not None:
            if field not in NUMERIC_FIELDS:
                raise SpecError(key, "ranges (__gte, __gt, __lte, __lt) apply to numeric fields only")
            if key in out:
                raise SpecError(key, "given twice")
            out[key] = [parse_float(key, raw)]  # ints too: params__lt=1e6 (errors name the key)
            continue
        if key in LIST_FIELDS:
            raise SpecError(key, "a list-valued field cannot be filtered on")
        if key not in FILTER_FIELDS:
            raise SpecError(key, f"unknown filter field; known: {', '.join(sorted(FILTER_FIELDS))} (ranges: "
                                 f"FIELD__gte, __gt, __lte, __lt)")
        for part in raw.split(","):
            out.setdefault(key, []).append(_coerce(key, part))
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}
