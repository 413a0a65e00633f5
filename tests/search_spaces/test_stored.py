"""The stored sweep spec (`sweeps.spec`): one typed model, the new nested layout and the old flat one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from search_spaces.spec import SweepSpec
from search_spaces.stored import Extension, StoredSweep

EXT = {"first_idx": 4, "n_trials": 2, "patch": {"seeds": [0, 1]}}
SPEC = {"name": "s1", "depths": [[1], [1], [1, 2]], "widths": [[1], [1], [1]], "dataset": "synthetic", "seeds": [0]}


def test_nested_layout_round_trips() -> None:
    stored = StoredSweep(spec=SweepSpec(**SPEC), data_root="/data", extensions=[Extension(**EXT)])
    dumped = stored.to_json()
    assert set(dumped) == {"spec", "data_root", "extensions"} and dumped["spec"]["name"] == "s1"
    assert StoredSweep.model_validate(dumped) == stored


def test_old_flat_rows_still_load() -> None:
    """Rows written before the typed layout: SweepSpec fields with name, data_root and extensions mixed in."""
    flat = SweepSpec(**SPEC).model_dump(mode="json") | {"data_root": "/data", "extensions": [EXT]}
    stored = StoredSweep.model_validate(flat)
    assert stored == StoredSweep(spec=SweepSpec(**SPEC), data_root="/data", extensions=[Extension(**EXT)])
    assert stored.name == "s1" and stored.launch_ranges() == [(0, 4), (4, None)]
    bare = StoredSweep.model_validate(SweepSpec(**SPEC).model_dump(mode="json") | {"data_root": None})
    assert (bare.data_root, bare.extensions, bare.launch_ranges()) == (None, [], [(0, None)])


def test_rows_from_before_the_macs_rename_load() -> None:
    flat = SPEC | {"constraints": {"min_params": 5, "max_params": None, "min_flops": 7, "max_flops": None}}
    assert StoredSweep.model_validate(flat).spec.constraints.min_macs == 7


@pytest.mark.parametrize(("search", "is_search"), [
    (None, False),
    ({"algorithm": "grid", "scheduler": "asha"}, False),
    ({"algorithm": "tpe", "objectives": [{"metric": "robust_acc", "mode": "max"}]}, True),
])
def test_one_is_search(search: dict | None, is_search: bool) -> None:
    assert StoredSweep(spec=SweepSpec(**SPEC | {"search": search})).is_search is is_search
    assert StoredSweep.model_validate(SPEC | {"search": search}).is_search is is_search  # the flat layout too


def test_extended_keeps_name_and_root_and_appends() -> None:
    stored = StoredSweep(spec=SweepSpec(**SPEC), data_root="/data")
    out = stored.extended(SweepSpec(**SPEC | {"name": None, "seeds": [0, 1]}), Extension(**EXT))
    assert (out.name, out.data_root, out.spec.seeds, out.extensions) == ("s1", "/data", [0, 1], [Extension(**EXT)])
    assert stored.extensions == []  # unchanged


@pytest.mark.parametrize(("row", "field"), [
    ({"spec": SPEC, "extensions": [EXT | {"n_trials": 0}]}, "n_trials"),
    ({"spec": SPEC | {"depth": [[1]]}}, "depth"),
    ({"spec": SPEC, "colour": "red"}, "colour"),
])
def test_bad_rows_name_the_field(row: dict, field: str) -> None:
    with pytest.raises(ValidationError) as e:
        StoredSweep.model_validate(row)
    assert field in str(e.value)
