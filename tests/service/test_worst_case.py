"""The worst inputs of the read routes, through the API: 20,000 identical imported rows (6,500 made /pareto take
5.8 s, the plot 29.5 s, the sweep page 40.6 s and /trials 16.5 s with 57 MB). Each answers a bounded page, with the
noise check computed once for the identical rows; the work is asserted by structure (pages, distinct points), the
times are in docs/worst-case.md (service.bench.worst_case)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from testkit.api_client import api_client

from db.engine import make_engine, session_factory
from service.bench.worst_case import build_identical
from service.plots import PlotOptions
from service.plots.pareto import pareto_series
from service.settings import Settings

N = 20_000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings, int]]:
    tmp: Path = tmp_path_factory.mktemp("worst")
    settings = Settings(database_url=f"sqlite:///{tmp / 'rg.db'}", storage_path=str(tmp / "ray"),
                        ray_address="http://127.0.0.1:9")
    with api_client(settings) as client:  # migrates the store first
        sweep_id = build_identical(settings.database_url, N)
        yield client, settings, sweep_id


def test_trials_are_paged_like_results(store: tuple[TestClient, Settings, int]) -> None:
    client, _, sweep_id = store
    r = client.get(f"/api/v1/sweeps/{sweep_id}/trials")
    assert r.status_code == 200 and len(r.json()) == 1000
    assert (r.headers["X-Total-Count"], r.headers["X-Limit"], r.headers["X-Offset"]) == (str(N), "1000", "0")
    assert [t["idx"] for t in r.json()[:3]] == [0, 1, 2]
    last = client.get(f"/api/v1/sweeps/{sweep_id}/trials", params={"limit": 10_000, "offset": N - 10})
    assert [t["idx"] for t in last.json()] == list(range(N - 10, N))
    for params, field in [({"limit": 10_001}, "limit"), ({"limit": 0}, "limit"), ({"offset": -1}, "offset"),
                          ({"offset": 2**63}, "offset")]:
        bad = client.get(f"/api/v1/sweeps/{sweep_id}/trials", params=params)
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", field], bad.text


def test_pareto_of_identical_rows_is_one_point_checked_once_and_paged(store: tuple[TestClient, Settings, int]
                                                                      ) -> None:
    client, _, sweep_id = store
    r = client.get("/api/v1/pareto", params={"sweep": sweep_id})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n_points"] == N and r.headers["X-Total-Count"] == str(N) and len(body["front"]) == 1000
    # identical rows do not count against each other, and nothing else is there: no point is within noise
    assert body["front_within_noise"] is False and {p["within_noise"] for p in body["front"]} == {False}
    assert [p["seed"] for p in body["front"][:3]] == [0, 1, 2]
    small = client.get("/api/v1/pareto", params={"sweep": sweep_id, "limit": 5})
    assert len(small.json()["front"]) == 5 and small.json()["n_points"] == N
    assert client.get("/api/v1/pareto", params={"limit": 10_001}).status_code == 422


def test_the_pareto_plot_draws_identical_rows_once(store: tuple[TestClient, Settings, int]) -> None:
    client, settings, sweep_id = store
    with session_factory(make_engine(settings.database_url))() as s:
        (series,) = pareto_series(s, sweep_refs=[sweep_id], options=PlotOptions())
    assert (series.x, series.y, series.on_front, series.dropped) == ([46_160_474.0], [0.5], [True], 0)
    r = client.get(f"/api/v1/sweeps/{sweep_id}/plots/pareto.png")
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
    refs = [str(sweep_id)] * 6
    assert client.get(f"/api/v1/sweeps/{sweep_id}/plots/pareto.png", params={"reference": refs}).status_code == 422


def test_the_sweep_page_reads_one_page(store: tuple[TestClient, Settings, int]) -> None:
    client, _, sweep_id = store
    r = client.get(f"/sweeps/{sweep_id}", params={"sort": "seed", "desc": 1, "limit": 50, "offset": 100})
    assert r.status_code == 200
    assert r.text.count("/plots/curves.svg") == 50 and f">{N - 101}<" in r.text  # seeds 19899 down to 19850
    assert client.get(f"/sweeps/{sweep_id}", params={"offset": 2**63}).status_code == 422


def test_the_eps_and_lambda_plots_draw_at_most_max_series(store: tuple[TestClient, Settings, int]) -> None:
    """20,000 one-seed groups: the eps plot drew a line and a legend entry for each (6,500 took 7 minutes); now the
    first MAX_SERIES, and the title counts the rest."""
    from service.plots.common import MAX_SERIES
    from service.plots.eps import draw_eps, eps_groups

    client, settings, sweep_id = store
    with session_factory(make_engine(settings.database_url))() as s:
        groups, failure = eps_groups(s, sweep_ref=sweep_id, options=PlotOptions())
    assert len(groups) == N
    fig = draw_eps(groups, failure, PlotOptions())
    assert len(fig.axes[0].lines) == MAX_SERIES and f"{N - MAX_SERIES:,} more not drawn" in fig._suptitle.get_text()
    for kind in ("eps", "lambda-width", "depth-heatmap"):
        assert client.get(f"/api/v1/sweeps/{sweep_id}/plots/{kind}.png").status_code == 200, kind
