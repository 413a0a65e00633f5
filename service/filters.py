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

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from db.contract import FILTER_FIELDS, FLOAT_FIELDS, INT_FIELDS, LIST_FIELDS, NUMERIC_FIELDS, check_attack_key
from db.results import FLOAT_TOLERANCE, Approx, split_range
from search_spaces.spec import SpecError


def parse_float(field: str, raw: str) -> Approx:
    """`8/255` -> the fraction (tight); `0.0314` -> +-0.00005; `1e-3` -> +-0.0005; `6` -> exactly 6."""
    text = raw.strip()
    try:
        if "/" in text:
            num, den = (Decimal(p) for p in text.split("/", 1))
            value = float(Fraction(num) / Fraction(den))
            return Approx(value, FLOAT_TOLERANCE * max(1.0, abs(value)))
        dec = Decimal(text)
        if not dec.is_finite():
            raise InvalidOperation
    except (InvalidOperation, ValueError, ZeroDivisionError):
        raise SpecError(field, f"{raw!r} is not a number (write 0.0314, 8/255 or 3e-2)") from None
    value = float(dec)
    exponent = int(dec.as_tuple().exponent)  # type: ignore[arg-type]
    if exponent >= 0 and "e" not in text.lower():  # written without a decimal point: exact
        return Approx(value, FLOAT_TOLERANCE * max(1.0, abs(value)))
    return Approx(value, 0.5 * 10.0**exponent)


def _coerce(field: str, raw: str) -> Any:
    if field in FLOAT_FIELDS:
        return parse_float(field, raw)
    if field in INT_FIELDS:
        try:
            return int(raw)
        except ValueError:
            raise SpecError(field, f"{raw!r} is not an integer") from None
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
            out[key] = [parse_float(field, raw)]  # ints too: params__lt=1e6
            continue
        if key in LIST_FIELDS:
            raise SpecError(key, "a list-valued field cannot be filtered on")
        if key not in FILTER_FIELDS:
            raise SpecError(key, f"unknown filter field; known: {', '.join(sorted(FILTER_FIELDS))} (ranges: "
                                 f"FIELD__gte, __gt, __lte, __lt)")
        for part in raw.split(","):
            out.setdefault(key, []).append(_coerce(key, part))
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}
