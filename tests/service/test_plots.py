"""Plots: the figures' data (points, fronts, error bars, labels, heatmap cells, eps*, lines), not pixels; and the
plot routes answering PNG and SVG for a finished run sweep and an imported reference sweep. A real SQLite store
filled through db/ functions; no Ray."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from db.contract import EpochReport, FinalRow
from db.engine import make_engine, session_factory, upgrade
from db.results import upsert_epoch, upsert_final
from db.sweeps import create_sweep, mark_trial
from search_spaces.spec import SpecError
from service.plots import PlotOptions, render, sweep_figure
from db.stats import binomial_se
from service.plots.common import mean_and_se, row_se
from service.plots.curves import curves_figure
from service.plots.depth_heatmap import depth_grid, draw_depth_heatmap
from service.plots.eps import draw_eps, eps_groups
from service.plots.lambda_width import draw_lambda_width, width_lines
from service.plots.pareto import draw_pareto, pareto_series

E = 1 / 255
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# depth grid: (depths, params, n_robust of 100): the front in (params down, robust_acc up) is 1-1-1, 3-1-1, 3-3-3
GRID = [("1-1-1", 1000, 30), ("3-1-1", 2000, 40), ("1-3-1", 2500, 35), ("3-3-1", 3000, 38), ("1-1-3", 3500, 39),
        ("3-3-3", 5000, 50)]  # fmt: skip
EPS_LOSS = [(0, 0.5), (2, 0.9), (4, 1.3), (8, 2.1)]  # (eps in /255, adv_loss_train); R0 = 1.1 -> eps* = 3/255
R0 = 1.1


def _trial(i: int, **kw: Any) -> dict[str, Any]:
    depths, widths = kw.pop("depths", "5-5-5"), kw.pop("widths", "1-1-1")
    base = {"config": kw.pop("config", {}), "config_hash": f"h{i}", "arch": f"wrn-d{depths}-w{widths}",
            "depths": depths, "widths": widths, "params": 1000 * (i + 1), "macs": 10_000 * (i + 1), "method": "sat",
            "lam": 1.0, "eps": 8 * E, "norm": "linf", "dataset": "cifar10-jpeg", "n_train": None, "seed": 0}  # fmt: skip
    return base | kw


def _final(s: Any, trial_id: int, *, n_robust: int | None, robust_acc: float | None = None, n_total: int | None = 100,
           stability: float | None = 0.6, clean_loss_test: float | None = None) -> None:
    acc = robust_acc if robust_acc is not None else (n_robust / n_total if n_robust is not None and n_total else None)
    upsert_final(s, trial_id=trial_id, row=FinalRow(checkpoint="best", attack="pgd20", epoch=2, clean_acc=0.7,
                                                    robust_acc=acc, stability=stability, n_total=n_total,
                                                    n_robust=n_robust, clean_loss_test=clean_loss_test))


def _done(s: Any, trial_id: int) -> None:
    mark_trial(s, trial_id=trial_id, status="running", actor="writer")
    mark_trial(s, trial_id=trial_id, status="completed", actor="writer")


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Sweeps: `grid` (depth grid, id 1), `ref` (imported, no counts, id 2), `eps` (an eps grid, id 3),
    `width` (lambda x width x 2 seeds, id 4)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('plots') / 'rg.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        grid = create_sweep(s, name="grid", spec={}, code_version="test",
                            trials=[_trial(i, depths=d, params=p) for i, (d, p, _) in enumerate(GRID)])
        for t, (_, _, n) in zip(grid.trials, GRID, strict=True):
            _done(s, t.id)
            _final(s, t.id, n_robust=n)
            for e in (1, 2):
                upsert_epoch(s, trial_id=t.id, report=EpochReport(epoch=e, robust_acc=0.2 * e, stability=0.3 * e,
                                                                  clean_acc=0.4 * e, natural_risk=1.5 / e,
                                                                  robust_reg=0.5 / e))
        ref = create_sweep(s, name="ref", spec={}, code_version="published",
                           trials=[_trial(10 + i, params=p) for i, p in enumerate((1500, 4000))])
        ref.imported, ref.source = True, "wu2021-table1"
        for t, acc in zip(ref.trials, (0.45, 0.55), strict=True):
            _done(s, t.id)
            _final(s, t.id, n_robust=None, robust_acc=acc, n_total=None)
        eps = create_sweep(s, name="eps", spec={}, code_version="test",
                           trials=[_trial(20 + i, eps=k * E, params=7000) for i, (k, _) in enumerate(EPS_LOSS)])
        for t, (k, loss) in zip(eps.trials, EPS_LOSS, strict=True):
            _done(s, t.id)
            upsert_epoch(s, trial_id=t.id, report=EpochReport(epoch=1, adv_loss_train=loss, adv_loss_val=loss + 0.1,
                                                              clean_loss_val=R0 if k == 0 else 2.0))  # R0 at epoch 1
            _final(s, t.id, n_robust=60 - 5 * k, stability=1 - 0.05 * k, clean_loss_test=2.0)
        width = create_sweep(s, name="width", spec={}, code_version="test", trials=[
            _trial(30 + 6 * seed + 3 * w + j, method="trades", lam=lam, widths=widths, seed=seed)
            for seed in (0, 1) for w, widths in enumerate(("1-1-1", "5-5-5")) for j, lam in enumerate((6.0, 9.0, 12.0))])
        for t in width.trials:
            _done(s, t.id)
            _final(s, t.id, n_robust=int(40 + t.lam + 5 * (t.widths == "5-5-5") + 2 * t.seed), n_total=200)
    engine.dispose()
    return url


@pytest.fixture
def session(url: str) -> Iterator[Any]:
    engine = make_engine(url)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


@pytest.fixture(scope="module")
def client(url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from testkit.api_client import api_client

    from service.settings import Settings

    with api_client(Settings(database_url=url, storage_path=str(tmp_path_factory.mktemp("storage")))) as c:
        yield c


def _by_gid(ax: Any, gid: str) -> Any:
    found = [a for a in [*ax.collections, *ax.lines] if a.get_gid() == gid]
    assert len(found) == 1, f"{gid}: {[a.get_gid() for a in [*ax.collections, *ax.lines]]}"
    return found[0]


def test_binomial_standard_errors() -> None:
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert binomial_se(0.184, 500) == pytest.approx(math.sqrt(0.184 * 0.816 / 500))
    assert binomial_se(0.5, None) is None and binomial_se(None, 100) is None and binomial_se(0.5, 0) is None
    assert row_se({"robust_acc": 0.3, "n_total": 100}, "robust_acc") == pytest.approx(math.sqrt(0.21) / 10)
    assert row_se({"robust_acc": 0.3, "n_total": 100, "robust_acc_se": 0.01}, "robust_acc") == 0.01
    assert row_se({"params": 10, "n_total": 100}, "params") is None
    assert mean_and_se([0.2, 0.4], [0.03, 0.04]) == (pytest.approx(0.3), pytest.approx(0.025))
    assert mean_and_se([0.2, 0.4], [0.03, None])[1] is None


def test_options_name_the_bad_field() -> None:
    for kw, field in (({"x": "flops"}, "x"), ({"metric": "arch"}, "metric"), ({"attack": "pgd"}, "attack"),
                      ({"checkpoint": "first"}, "checkpoint")):
        with pytest.raises(SpecError) as e:
            PlotOptions(**kw)
        assert e.value.field == field


def test_pareto_points_front_error_bars_and_labels(session: Any) -> None:
    options = PlotOptions()
    run, ref = pareto_series(session, sweep_refs=[1, "ref"], options=options)
    assert (run.sweep, run.imported, ref.imported) == ("grid", False, True)
    assert run.front() == [(1000.0, 0.30), (2000.0, 0.40), (5000.0, 0.50)]
    assert ref.front() == [(1500.0, 0.45), (4000.0, 0.55)] and ref.se == [None, None]
    fig = draw_pareto([run, ref], options)
    ax = fig.axes[0]
    points = _by_gid(ax, "points:grid").get_offsets()
    assert len(points) == 6 and sorted(map(tuple, np.asarray(points))) == sorted((float(p), n / 100) for _, p, n in GRID)
    front_line = _by_gid(ax, "front:grid")
    assert list(front_line.get_xdata()) == [1000, 2000, 5000] and list(front_line.get_ydata()) == [0.3, 0.4, 0.5]
    assert len(_by_gid(ax, "front-points:grid").get_offsets()) == 3
    bars = _by_gid(ax, "errors:grid").get_segments()  # one vertical segment per point: y +- sqrt(p(1-p)/100)
    half = sorted(round((seg[1][1] - seg[0][1]) / 2, 6) for seg in bars)
    assert half == sorted(round(math.sqrt(n / 100 * (1 - n / 100) / 100), 6) for *_, n in GRID)
    ref_points = _by_gid(ax, "points:ref")  # the reference: grey squares, no error bars (no counts)
    assert tuple(ref_points.get_facecolor()[0][:3]) == pytest.approx((0.55, 0.55, 0.55))
    assert ref_points.get_paths()[0] != _by_gid(ax, "points:grid").get_paths()[0]
    assert not [a for a in ax.collections if a.get_gid() == "errors:ref"]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted([*(f"wrn-d{d}-w1-1-1" for d, *_ in GRID), "wrn-d5-5-5-w1-1-1", "wrn-d5-5-5-w1-1-1"])
    assert ax.get_xlabel() == "parameters" and "ref (reference)" in [t.get_text() for t in ax.get_legend().texts]


def test_pareto_in_macs(session: Any) -> None:
    (run,) = pareto_series(session, sweep_refs=["grid"], options=PlotOptions(x="macs"))
    assert run.front() == [(10_000.0, 0.30), (20_000.0, 0.40), (60_000.0, 0.50)]


def test_depth_heatmap_cells_and_panels(session: Any) -> None:
    options = PlotOptions(metric="robust_acc")
    grid = depth_grid(session, sweep_ref="grid", options=options)
    assert (grid.d1, grid.d2, grid.d3, grid.n_cells) == ([1, 3], [1, 3], [1, 3], 6)
    np.testing.assert_allclose(grid.values[0], [[0.30, 0.35], [0.40, 0.38]])  # D3 = 1: rows D1, columns D2
    np.testing.assert_allclose(grid.values[1], [[0.39, np.nan], [np.nan, 0.50]])
    fig = draw_depth_heatmap(grid, options)
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["D3 = 1", "D3 = 3"]
    assert panels[0].images[0].get_array()[1, 0] == pytest.approx(0.40)
    assert panels[1].images[0].get_array().mask.tolist() == [[False, True], [True, False]]
    with pytest.raises(SpecError, match="numeric result field"):
        PlotOptions(metric="depths")


def test_training_curves_of_a_trial(session: Any) -> None:
    fig = curves_figure(session, trial_id=1)
    objective, stability, accuracy = fig.axes[:3]
    assert [ln.get_label() for ln in objective.lines] == ["natural_risk", "robust_reg"]
    assert list(objective.lines[0].get_ydata()) == [1.5, 0.75] and list(objective.lines[1].get_xdata()) == [1, 2]
    assert list(stability.lines[0].get_ydata()) == pytest.approx([0.3, 0.6])
    assert [ln.get_label() for ln in accuracy.lines] == ["robust_acc", "clean_acc"]
    assert list(accuracy.lines[0].get_ydata()) == pytest.approx([0.2, 0.4])


def test_eps_plot_marks_eps_star(session: Any) -> None:
    options = PlotOptions()
    groups, failure = eps_groups(session, sweep_ref="eps", options=options)
    assert failure is None and len(groups) == 1
    (g,) = groups
    assert g.eps_star == pytest.approx(3 * E) and g.r0 == pytest.approx(R0)
    assert g.loss == [(pytest.approx(k * E), loss) for k, loss in EPS_LOSS]
    assert [v for _, v in g.metrics["robust_acc"]] == pytest.approx([0.6, 0.5, 0.4, 0.2])
    fig = draw_eps(groups, failure, options)
    stars = [ln for ax in fig.axes for ln in ax.lines if ln.get_gid() == "eps-star"]
    assert len(stars) == 3 and all(ln.get_xdata()[0] == pytest.approx(3.0) for ln in stars)  # in /255 units
    assert "3.00/255" in fig.get_suptitle()
    _, failure = eps_groups(session, sweep_ref="ref", options=options)  # no eps = 0 run: drawn, and says why
    assert failure is not None and "eps = 0" in failure
    assert "eps* not available" in draw_eps(*eps_groups(session, sweep_ref="ref", options=options), options).get_suptitle()


def test_lambda_width_lines(session: Any) -> None:
    options = PlotOptions()
    lines = width_lines(session, sweep_ref="width", options=options)
    assert [ln.label for ln in lines] == ["trades w1-1-1", "trades w5-5-5"]
    assert lines[0].lam == [6.0, 9.0, 12.0]
    # mean over seeds 0 and 1 of (40 + lam + 5 [w5] + 2 seed) / 200
    assert lines[1].value == pytest.approx([(40 + lam + 5 + 1) / 200 for lam in (6, 9, 12)])
    p0, p1 = (40 + 6 + 0) / 200, (40 + 6 + 2) / 200
    assert lines[0].se[0] == pytest.approx(math.hypot(binomial_se(p0, 200), binomial_se(p1, 200)) / 2)
    fig = draw_lambda_width(lines, options)
    assert [t.get_text() for t in fig.axes[0].get_legend().texts] == ["trades w1-1-1", "trades w5-5-5"]


def test_render_png_and_svg(session: Any) -> None:
    fig = sweep_figure(session, kind="pareto", sweep_ref="grid", options=PlotOptions())
    assert render(fig, "png").startswith(PNG_MAGIC)
    svg = render(fig, "svg")
    assert b"<svg" in svg[:500] and b"<dc:date>" not in svg  # no timestamp in the file
    with pytest.raises(SpecError):
        render(fig, "jpg")


@pytest.mark.parametrize("kind", ["pareto", "depth-heatmap", "eps", "lambda-width"])
@pytest.mark.parametrize("sweep_id", [1, 2])  # a finished run sweep and an imported reference sweep
def test_plot_routes_answer_png_and_svg(client: TestClient, kind: str, sweep_id: int) -> None:
    png = client.get(f"/api/v1/sweeps/{sweep_id}/plots/{kind}.png")
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png" and png.content.startswith(PNG_MAGIC)
    svg = client.get(f"/api/v1/sweeps/{sweep_id}/plots/{kind}.svg", params={"x": "macs"})
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content[:500]


def test_plot_route_options_and_errors(client: TestClient) -> None:
    overlay = client.get("/api/v1/sweeps/1/plots/pareto.svg", params={"reference": ["ref"]})
    assert overlay.status_code == 200 and b"ref (reference)" in overlay.content
    curves = client.get("/api/v1/trials/1/plots/curves.png")
    assert curves.status_code == 200 and curves.content.startswith(PNG_MAGIC)
    assert client.get("/api/v1/sweeps/99/plots/pareto.png").status_code == 404
    assert client.get("/api/v1/trials/999/plots/curves.svg").status_code == 404
    assert client.get("/api/v1/sweeps/1/plots/scatter.png").status_code == 422
    assert client.get("/api/v1/sweeps/1/plots/pareto.gif").status_code == 422
    bad = client.get("/api/v1/sweeps/1/plots/depth-heatmap.png", params={"metric": "arch"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "metric"
    none = client.get("/api/v1/sweeps/1/plots/pareto.png", params={"attack": "cw20"})
    assert none.status_code == 422 and "pgd20" in none.json()["detail"][0]["msg"]  # names the attacks present
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    assert "/api/v1/sweeps/{sweep_id}/plots/{kind}.{fmt}" in paths


def test_cli_plot_writes_png_and_svg(url: str, tmp_path: Path) -> None:
    from service.cli import app

    runner = CliRunner()
    for name in ("pareto.png", "heat.svg"):
        kind = "pareto" if name.startswith("pareto") else "depth-heatmap"
        r = runner.invoke(app, ["plot", kind, "--sweep", "grid", "--reference", "ref", "--out",
                                str(tmp_path / name), "--database-url", url])
        assert r.exit_code == 0, r.output
    assert (tmp_path / "pareto.png").read_bytes().startswith(PNG_MAGIC)
    assert b"<svg" in (tmp_path / "heat.svg").read_bytes()[:500]
    r = runner.invoke(app, ["plot", "curves", "--trial", "1", "--out", str(tmp_path / "c.png"), "--database-url", url])
    assert r.exit_code == 0 and (tmp_path / "c.png").stat().st_size > 1000
    bad = runner.invoke(app, ["plot", "pareto", "--sweep", "grid", "--out", str(tmp_path / "p.gif"),
                              "--database-url", url])
    assert bad.exit_code == 2 and "out" in bad.output and not (tmp_path / "p.gif").exists()


def test_a_plot_the_sweep_cannot_make_is_409_not_a_query_error(tmp_path: Path) -> None:
    """A published reference has no stage depths: its depth heatmap is a state of the sweep (409), not a 422 naming
    a query parameter `depths` the route does not have."""
    from testkit.api_client import api_client

    from service.references import load_published
    from service.settings import Settings

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path))
    if settings.published_dir is None:
        pytest.skip("no ../shared/data/published beside the checkout")
    with api_client(settings) as client:
        load_published(client.app.state.sessions, settings.published_dir)  # type: ignore[attr-defined]
        answers = {s["id"]: client.get(f"/api/v1/sweeps/{s['id']}/plots/depth-heatmap.png")
                   for s in client.get("/api/v1/sweeps").json()}
    refused = {i: r for i, r in answers.items() if r.status_code != 200}
    assert refused, "a published reference without stage depths"
    for i, r in refused.items():
        assert r.status_code == 409, r.text
        assert r.json()["detail"].startswith(f"the depth-heatmap plot of sweep {i} cannot be drawn: ")
