"""The results pages: the sweep list (progress per status, the Ray dashboard link and how to log in), a sweep's
page (trial table sorted server-side, accuracies with their standard errors, plot images), the compare view, the
offline API docs; and the page of a finished sweep loaded in headless Chromium against a running service."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from db.contract import FinalRow
from db.engine import make_engine, session_factory, upgrade
from db.results import upsert_final
from db.sweeps import create_sweep, mark_trial
from service.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
E = 1 / 255
ROBUST = [30, 45, 40]  # n_robust of n_total = 200 per completed trial


def _trial(i: int, depths: str, params: int) -> dict[str, Any]:
    return {"config": {}, "config_hash": f"h{i}", "arch": f"wrn-d{depths}-w1-1-1", "depths": depths,
            "widths": "1-1-1", "params": params, "macs": 10 * params, "method": "sat", "lam": 1.0, "eps": 8 * E,
            "norm": "linf", "dataset": "cifar10-jpeg", "n_train": None, "seed": 0}  # fmt: skip


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`cifar-depths` (id 1): three completed trials with final rows, a fourth still running; `wu2021` (id 2): an
    imported reference sweep of one row."""
    url = f"sqlite:///{tmp_path_factory.mktemp('pages') / 'rg.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        run = create_sweep(s, name="cifar-depths", spec={}, code_version="test", trials=[
            _trial(0, "1-1-1", 1000), _trial(1, "3-1-1", 3000), _trial(2, "1-3-1", 2000), _trial(3, "3-3-1", 4000)])
        for t, n in zip(run.trials, ROBUST, strict=False):
            mark_trial(s, trial_id=t.id, status="running", actor="writer")
            upsert_final(s, trial_id=t.id, row=FinalRow(checkpoint="best", attack="pgd20", epoch=3, clean_acc=0.7,
                                                        robust_acc=n / 200, stability=0.5, n_total=200,
                                                        n_robust=n))
            mark_trial(s, trial_id=t.id, status="completed", actor="writer", device_seconds=12.0)
        mark_trial(s, trial_id=run.trials[3].id, status="running", actor="writer")
        ref = create_sweep(s, name="wu2021", spec={}, code_version="published", trials=[_trial(9, "5-5-5", 2500)])
        ref.imported, ref.source = True, "wu2021-table1"
        upsert_final(s, trial_id=ref.trials[0].id, row=FinalRow(checkpoint="best", attack="pgd20", robust_acc=0.478))
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def settings(url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(database_url=url, storage_path=str(tmp_path_factory.mktemp("storage")), dashboard_port=8265)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    from testkit.api_client import api_client

    with api_client(settings) as c:
        yield c


def _rows(page: str) -> list[list[str]]:
    """The trial table's cells, row by row (tags stripped, entities decoded)."""
    body = page.split('<table class="trials"', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td>(.*?)</td>", tr)]
            for tr in re.findall(r'<tr class="trial"[^>]*>(.*?)</tr>', body, re.DOTALL)]


def test_index_lists_sweeps_with_progress_and_the_dashboard(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "cifar-depths" in page and "wu2021" in page and "reference" in page
    assert 'href="http://127.0.0.1:8265"' in page and "~/.ray/auth_token" in page
    run_row = page.split('data-sweep-id="1"', 1)[1].split("</tr>", 1)[0]
    assert 'class="seg completed" style="width: 75.0%"' in run_row  # 3 of 4 trials
    assert 'class="seg running" style="width: 25.0%"' in run_row and "3 / 4 finished" in run_row
    assert 'href="/compare?run=1&amp;reference=2"' in run_row


def test_sweep_page_table_sorting_and_plots(client: TestClient) -> None:
    page = client.get("/sweeps/1").text
    assert '<h1 id="sweep-name">cifar-depths</h1>' in page
    rows = _rows(page)
    assert [r[0] for r in rows] == ["0", "1", "2", "3"]  # by trial index
    assert rows[0][1] == "wrn-d1-1-1-w1-1-1" and rows[0][6] == "8" and rows[0][8] == "completed"
    assert rows[0][10] == "0.150 ± 0.025" and rows[1][10] == "0.225 ± 0.030"  # sqrt(p (1-p) / 200)
    assert rows[3][10] == "" and rows[3][8] == "running"
    assert 'src="/api/v1/sweeps/1/plots/pareto.png?attack=pgd20&amp;checkpoint=best"' in page
    assert 'src="/api/v1/sweeps/1/plots/depth-heatmap.png?' in page
    by_acc = _rows(client.get("/sweeps/1", params={"sort": "robust_acc", "desc": 1}).text)
    assert [r[0] for r in by_acc] == ["1", "2", "0", "3"]  # highest first, no value last
    by_params = _rows(client.get("/sweeps/1", params={"sort": "params"}).text)
    assert [r[2] for r in by_params] == ["1,000", "2,000", "3,000", "4,000"]
    paged = client.get("/sweeps/1", params={"limit": 2, "offset": 2}).text
    assert [r[0] for r in _rows(paged)] == ["2", "3"] and "rows 3–4 of 4" in paged and "previous" in paged
    bad = client.get("/sweeps/1", params={"sort": "nope"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "sort"
    assert client.get("/sweeps/77").status_code == 404


def test_plot_images_the_pages_point_at_are_served(client: TestClient) -> None:
    for page in ("/sweeps/1", "/sweeps/2", "/compare?run=1&reference=2"):
        srcs = re.findall(r'<img class="plot"[^>]* src="([^"]+)"', client.get(page).text)
        assert srcs, page
        for src in srcs:
            img = client.get(html.unescape(src))
            assert img.status_code == 200 and img.content.startswith(b"\x89PNG"), src


def test_compare_view_overlays_run_and_reference(client: TestClient) -> None:
    page = client.get("/compare", params={"run": 1, "reference": 2}).text
    assert "cifar-depths" in page and "wu2021" in page
    assert 'src="/api/v1/sweeps/1/plots/pareto.png?x=params&amp;attack=pgd20&amp;reference=2"' in page
    svg = client.get("/api/v1/sweeps/1/plots/pareto.svg", params={"reference": 2}).text
    assert "wu2021 (reference)" in svg and "cifar-depths: front" in svg
    assert client.get("/compare", params={"run": 1, "reference": 99}).status_code == 404
    assert client.get("/compare", params={"run": 1}).status_code == 422


def test_docs_load_only_local_assets(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "SwaggerUIBundle" in page and not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "cdn" not in page.lower() and "http://" not in page and "https://" not in page
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 500, asset
    assert client.get("/redoc").status_code == 404  # redoc only loads from a CDN: not served


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                    reason="needs Debian's chromium (/usr/bin/chromium): `make browser` installs it")
def test_sweep_page_in_headless_chromium(settings: Settings, tmp_path: Path) -> None:
    from testkit.api_server import free_port, running_api

    with running_api(settings.model_copy(update={"api_port": free_port()})) as api:
        page = api.removesuffix("/api/v1") + "/sweeps/1"
        dom = _chromium(["--virtual-time-budget=15000", "--dump-dom", page], tmp_path / "profile")
        shot = tmp_path / "sweep.png"
        _chromium(["--virtual-time-budget=15000", "--window-size=1280,900", f"--screenshot={shot}", page],
                  tmp_path / "profile2")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert '<h1 id="sweep-name">cifar-depths</h1>' in text
    assert len(re.findall(r'<tr class="trial"', text)) == 4 and "0.225 ± 0.030" in text
    widths = dict(re.findall(r'<img class="plot" id="(\w+)"[^>]*data-natural-width="(\d+)"', text))
    assert int(widths["pareto"]) > 0 and int(widths["heatmap"]) > 0, widths  # both plots loaded
    assert shot.exists() and shot.read_bytes().startswith(b"\x89PNG")  # kept in pytest's tmp dir to look at
