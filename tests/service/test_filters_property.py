"""Property tests of the query-string filter parser (service.filters): any text in gives either filters the database
can run (integers within int64, finite floats) or a SpecError naming the field, never another exception and never
a slow parse; valid values round-trip."""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from db.contract import FILTER_FIELDS, FLOAT_FIELDS, INT_FIELDS, NUMERIC_FIELDS
from db.engine import make_engine, session_factory, upgrade
from db.fields import INT64_MAX, INT64_MIN
from db.results import Approx, query_results
from search_spaces.spec import SpecError
from service.filters import parse_filters

RANGES = ("gte", "gt", "lte", "lt")
KEYS = sorted(FILTER_FIELDS) + [f"{f}__{op}" for f in sorted(NUMERIC_FIELDS) for op in RANGES]
NUMBERISH = st.one_of(  # what a careless or hostile client writes where a number goes
    st.text(max_size=40),
    st.text(alphabet="0123456789eE+-./_ \u00b3\u0663infatyNI", max_size=40),
    st.integers().map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(lambda i: f"{i}e{i % 1000}"),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.tuples(st.integers(-(10**12), 10**12), st.integers(-(10**12), 10**12)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.sampled_from(["1e309", "-1e309", "1e999999999/1", "1/1e-999999999", "9" * 400, str(2**63), str(-(2**63) - 1),
                     "NaN", "sNaN", "Infinity", "8/255", "0/0", "1/0", "³", "٣", "1_000", " 12 ", "0x10"]),
)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('filters')) / 'rg.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


def _values(parsed: dict[str, Any]) -> list[Any]:
    return [x for v in parsed.values() for x in (v if isinstance(v, list) else [v])]


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), raw=NUMBERISH)
def test_any_text_parses_to_runnable_filters_or_names_the_field(session: Session, key: str, raw: str) -> None:
    try:
        parsed = parse_filters([(key, raw)], reserved=set())
    except SpecError as e:
        assert e.field == key and e.reason, e
        return
    assert set(parsed) == {key}
    for v in _values(parsed):
        if isinstance(v, Approx):
            assert math.isfinite(v.value) and math.isfinite(v.tol) and v.tol >= 0
        elif isinstance(v, int):
            assert INT64_MIN <= v <= INT64_MAX
    kind = "epoch" if key.split("__")[0] == "epoch" else "final"
    query_results(session, filters=parsed, kind=kind)  # the database takes every value it was given


@settings(max_examples=300)
@given(field=st.sampled_from(sorted(INT_FIELDS)), value=st.integers())
def test_integers_round_trip_within_int64_and_are_refused_beyond(field: str, value: int) -> None:
    if INT64_MIN <= value <= INT64_MAX:
        assert parse_filters([(field, str(value))], reserved=set()) == {field: value}
    else:
        with pytest.raises(SpecError, match="64-bit integer range") as e:
            parse_filters([(field, str(value))], reserved=set())
        assert e.value.field == field


@settings(max_examples=300)
@given(field=st.sampled_from(sorted(FLOAT_FIELDS)), value=st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_round_trip(field: str, value: float) -> None:
    (got,) = parse_filters([(field, repr(value))], reserved=set()).values()
    assert isinstance(got, Approx) and abs(got.value - value) <= got.tol  # the value written is matched


@settings(max_examples=200)
@given(field=st.sampled_from(sorted(FLOAT_FIELDS)), num=st.integers(-10_000, 10_000), den=st.integers(1, 10_000))
def test_fractions_round_trip(field: str, num: int, den: int) -> None:
    (got,) = parse_filters([(field, f"{num}/{den}")], reserved=set()).values()
    assert isinstance(got, Approx) and got.value == float(Fraction(num, den))


@settings(max_examples=100)
@given(key=st.sampled_from([f"{f}__{op}" for f in sorted(NUMERIC_FIELDS) for op in RANGES]),
       exponent=st.integers(309, 10**9), sign=st.sampled_from(["", "-"]))
def test_a_number_beyond_a_float_is_refused_naming_the_range_key(key: str, exponent: int, sign: str) -> None:
    with pytest.raises(SpecError, match="beyond the range of a 64-bit float") as e:
        parse_filters([(key, f"{sign}1e{exponent}")], reserved=set())
    assert e.value.field == key
