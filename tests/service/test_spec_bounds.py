"""Every number of a sweep spec is bounded (search_spaces.config MAX_*) and finite: a spec outside the bounds is a
422 naming the field, through /plan and /sweeps, before any counting; nothing reaches the store to overflow its
integer columns (a 500 before) and no plan counts 200,000,000 blocks (70 s of a core before)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from testkit.api_client import api_client

from service.settings import Settings

TINY: dict[str, Any] = {"depths": [[1], [1], [1]], "widths": [[1], [1], [1]], "dataset": "synthetic",
                        "n_train": [64], "training": {"epochs": 1, "batch_size": 32, "val_size": 32, "n_test": 32}}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("bounds")
    settings = Settings(database_url=f"sqlite:///{tmp / 'rg.db'}", storage_path=str(tmp / "ray"),
                        ray_address="http://127.0.0.1:9")
    with api_client(settings) as c:
        yield c


def _training(**kw: Any) -> dict[str, Any]:
    return {"training": {**TINY["training"], **kw}}


# (spec fields, the error's loc after "body", words of its message)
OUT_OF_BOUNDS = [
    ({"depths": [[200_000_000], [1], [1]]}, ["spec", "depths"], "200,000,000 > 1,000"),
    ({"depths": [[1]] * 17, "widths": [[1]] * 17}, ["spec", "depths"], "at most 16"),
    ({"widths": [[1e15], [1], [1]]}, ["spec", "widths"], "1e+15 > 100"),
    ({"widths": [[1e300], [1], [1]]}, ["spec", "widths"], "1e+300 > 100"),
    ({"gamma": [1e300]}, ["spec", "gamma", 0], "less than or equal to 100"),
    ({"seeds": [1e30]}, ["spec", "seeds", 0], ""),
    ({"seeds": [2**63]}, ["spec", "seeds", 0], "less than or equal to 2147483647"),
    ({"seeds": [-1]}, ["spec", "seeds", 0], "greater than or equal to 0"),
    ({"n_train": [10**30]}, ["spec", "n_train", 0], "less than or equal to 2147483647"),
    ({"lam": [1e308]}, ["spec", "lam", 0], "less than or equal to 1000"),
    ({"lam": ["inf"]}, ["spec", "lam", 0], "finite"),
    ({"eps": ["nan"]}, ["spec", "eps", 0], "finite"),
    ({"constraints": {"max_params": 10**30}}, ["spec", "constraints", "max_params"], "9223372036854775807"),
    ({"search": {"algorithm": "tpe", "objectives": [{"metric": "robust_acc", "mode": "max"}], "seed": 2**40}},
     ["spec", "search", "seed"], "2147483647"),
    (_training(epochs=10**30), ["training", "epochs"], "less than or equal to 10000"),
    (_training(batch_size=10**30), ["training", "batch_size"], "65536"),
    (_training(eval_batch_size=10**9), ["training", "eval_batch_size"], "65536"),
    (_training(val_size=10**30), ["training", "val_size"], "2147483647"),
    (_training(n_test=10**30), ["training", "n_test"], "2147483647"),
    (_training(lr=1e308), ["training", "lr"], "1000"),
    (_training(train_attack={"steps": 10**12}), ["training", "train_attack", "steps"], "10000"),
    (_training(eval_attack={"steps": 20, "kappa": 1e300}), ["training", "eval_attack", "kappa"], "1000"),
    (_training(schedule={"kind": "halve_after", "halve_after": 10**20}), ["training", "schedule", "halve_after"],
     "10000"),
    # found by schemathesis: an empty zip group was an IndexError (500) in the expansion
    ({"zip": [[]]}, ["spec", "zip", 0], "at least 1 item"),
    # a boolean is not an integer (pydantic's lax int took `false` as seed 0, `true` as one block)
    ({"seeds": [False]}, ["spec", "seeds", 0], "valid integer"),
    ({"seeds": False}, ["spec", "seeds", 0], "valid integer"),
    ({"n_train": [True]}, ["spec", "n_train", 0], "valid integer"),
    ({"depths": [[True], [1], [1]]}, ["spec", "depths", 0, 0], "valid integer"),
]


@pytest.mark.parametrize(("fields", "loc", "words"), OUT_OF_BOUNDS, ids=[str(c[1]) + str(i)
                                                                         for i, c in enumerate(OUT_OF_BOUNDS)])
@pytest.mark.parametrize("route", ["/api/v1/plan", "/api/v1/sweeps"])
def test_out_of_bounds_spec_numbers_are_422_naming_the_field(client: TestClient, route: str, fields: dict,
                                                             loc: list, words: str) -> None:
    t0 = time.perf_counter()
    r = client.post(route, json={"spec": {**TINY, **fields}})
    assert r.status_code == 422, r.text
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", *loc] and words in err["msg"], err
    assert time.perf_counter() - t0 < 1.0
    assert client.get("/api/v1/sweeps").json() == []  # nothing stored


def test_the_bounds_themselves_are_planned(client: TestClient) -> None:
    """At the bounds (1,000 blocks per stage, width 100 after gamma, the largest seed and n_train) the plan is
    counted in closed form, well under a second, with counts that fit the store."""
    spec = {**TINY, "depths": [[1000], [1000], [1000]], "widths": [[50], [50], [50]], "gamma": [2.0],
            "seeds": [2**31 - 1], "n_train": [2**31 - 1], "lam": [1000.0]}
    t0 = time.perf_counter()
    r = client.post("/api/v1/plan", json={"spec": spec})
    assert r.status_code == 200, r.text
    assert time.perf_counter() - t0 < 1.0
    (trial,) = r.json()["trials"]
    assert trial["arch"] == "wrn-d1000-1000-1000-w100-100-100" and trial["seed"] == 2**31 - 1
    assert trial["params"] == 967_497_280_474 and 0 < trial["macs"] < 2**63
