"""Limits: request bodies over max_body_bytes (413, by Content-Length and by the bytes streamed), long descriptions
and names (422 naming the field), sweeps over max_trials rejected before the grid is expanded (in milliseconds,
make_plan never called), the results page size; and error bodies never echo a large input back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from testkit.api_client import api_client

from search_spaces.spec import SweepSpec, expand
from service import submission
from service.limits import grid_size
from service.settings import Settings

TINY = {"depths": [[1], [1], [1]], "widths": [[1], [1], [1]], "dataset": "synthetic", "n_train": [64],
        "training": {"epochs": 1, "batch_size": 32, "val_size": 32, "n_test": 32}}
# 10 x 10 x 10 x 10 x 10 = 100,000 configurations
HUGE = {**TINY, "depths": [list(range(1, 11)), [1], [1]], "widths": [[1], list(range(1, 11)), [1]],
        "eps": [i / 255 for i in range(10)], "lam": [float(i) for i in range(1, 11)], "seeds": list(range(10))}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "ray"),
                        max_body_bytes=100_000, ray_address="http://127.0.0.1:9")
    with api_client(settings) as c:
        yield c


def test_body_over_the_limit_is_413_naming_it_by_header_and_by_stream(client: TestClient) -> None:
    big = b'{"spec": {"description": "' + b"x" * 100_000 + b'"}}'
    r = client.post("/api/v1/plan", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"detail": "the request body exceeds the limit of 100,000 bytes (setting max_body_bytes)"}

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer, counted as it arrives
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    r = client.post("/api/v1/sweeps", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "100,000 bytes (setting max_body_bytes)" in r.json()["detail"]
    small = client.post("/api/v1/plan", json={"spec": TINY})  # under the limit: answered as usual
    assert small.status_code == 200 and small.json()["totals"]["n_trials"] == 1


def test_long_description_and_name_are_422_naming_the_field_without_echoing_them(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "ray"))
    with api_client(settings) as c:  # the default body limit (1 MB) lets a 500 KB description through to the check
        for route in ("/api/v1/sweeps", "/api/v1/plan"):
            r = c.post(route, json={"spec": {**TINY, "description": "d" * 500_000}})
            assert r.status_code == 422, r.text
            assert r.json()["detail"] == [{"loc": ["body", "description"], "type": "value_error",
                                           "msg": "is 500,000 characters long; the limit is 10,000 "
                                                  "(setting max_description_chars)"}]
        r = c.post("/api/v1/plan", json={"spec": TINY, "name": "n" * 500_000})
        assert r.status_code == 422 and len(r.content) < 1000, len(r.content)
        err = r.json()["detail"][0]
        assert err["loc"] == ["body", "name"] and "at most 200 characters" in err["msg"]
        assert err["input"] == "n" * 200 + "... (500,000 characters)"
        r = c.post("/api/v1/plan", json={"spec": {**TINY, "colour": ["c" * 400_000]}})  # a large non-string input
        assert r.status_code == 422 and len(r.content) < 1000
        assert r.json()["detail"][0]["input"].endswith("... (400,004 characters)")


def test_100k_trials_are_refused_in_milliseconds_before_the_grid_is_expanded(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("make_plan was called")

    monkeypatch.setattr(submission, "make_plan", never)
    for route in ("/api/v1/sweeps", "/api/v1/plan"):
        t0 = time.perf_counter()
        r = client.post(route, json={"spec": HUGE})
        elapsed = time.perf_counter() - t0
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == [{"loc": ["body", "max_trials"], "type": "value_error",
                                       "msg": "the spec's axes multiply to 100,000 configurations, more than the "
                                              "limit of 2,000 trials (setting max_trials)"}]
        assert elapsed < 1.0, elapsed
    assert client.get("/api/v1/sweeps").json() == []  # nothing stored


@pytest.mark.parametrize("spec", [
    TINY,
    {**TINY, "depths": [[1, 2], [1, 3], [1]], "widths": [[1], [2, 4], [1, 2, 3]], "seeds": [0, 1]},
    {**TINY, "eps": [0.01, 0.02, 0.03], "seeds": [1, 2, 3], "zip": [["eps", "seeds"]], "lam": [1.0, 2.0]},
    {**TINY, "method": ["sat", "trades"], "norm": ["linf", "l2"], "gamma": [1.0, 2.0], "n_train": [64, 128]},
])
def test_grid_size_counts_what_expansion_makes(spec: dict) -> None:
    s = SweepSpec(**spec)
    assert grid_size(s) == len(expand(s))


def test_results_page_size_is_limited(client: TestClient) -> None:
    r = client.get("/api/v1/results", params={"limit": 10_001})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]
