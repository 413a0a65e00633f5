"""The results pages: the sweep list (progress per status, the Ray dashboard link and how to log in), a sweep's
page (trial table sorted server-side, accuracies with their standard errors, plot images), the compare view, the
offline API docs; and the pages in the system Chromium (Playwright) against a running service that adds nothing to
any request: the browser logs in through the form and holds only the session cookie."""

from __future__ import annotations

import html
import importlib.util
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from db.contract import EpochReport, FinalRow
from db.engine import make_engine, session_factory, upgrade
from db.results import upsert_epoch, upsert_final
from db.sweeps import create_sweep, mark_trial
from service.auth import SESSION_COOKIE, issue_token
from service.headers import SVG_POLICY
from service.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
E = 1 / 255
ROBUST = [30, 45, 40]  # n_robust of n_total = 200 per completed trial


def _trial(i: int, depths: str, params: int) -> dict[str, Any]:
    return {"config": {}, "config_hash": f"h{i}", "arch": f"wrn-d{depths}-w1-1-1", "depths": depths,
            "widths": "1-1-1", "params": params, "macs": 10 * params, "method": "sat", "lam": 1.0, "eps": 8 * E,
            "norm": "linf", "dataset": "cifar10-jpeg", "n_train": None, "seed": 0}  # fmt: skip


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`cifar-depths` (id 1): three completed trials with final rows, a fourth still running, each with three
    epochs (their curves); `wu2021` (id 2): an imported reference sweep of one row."""
    url = f"sqlite:///{tmp_path_factory.mktemp('pages') / 'rg.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        run = create_sweep(s, name="cifar-depths", spec={}, code_version="test", trials=[
            _trial(0, "1-1-1", 1000), _trial(1, "3-1-1", 3000), _trial(2, "1-3-1", 2000), _trial(3, "3-3-1", 4000)])
        for t in run.trials:
            for epoch in (1, 2, 3):
                upsert_epoch(s, trial_id=t.id, report=EpochReport(
                    epoch=epoch, clean_acc=0.5 + 0.05 * epoch, robust_acc=0.05 * epoch, stability=0.5,
                    natural_risk=1.0 / epoch, robust_reg=0.5 / epoch, adv_loss_val=1.5 / epoch))
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
    assert '<rect class="seg completed" x="0.0" width="75.0"' in run_row  # 3 of 4 trials, from the left
    assert '<rect class="seg running" x="75.0" width="25.0"' in run_row and "3 / 4 finished" in run_row
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
    svg = client.get("/api/v1/sweeps/1/plots/pareto.svg", params={"reference": 2})
    assert "wu2021 (reference)" in svg.text and "cifar-depths: front" in svg.text
    assert svg.headers["content-security-policy"] == SVG_POLICY  # opened on its own, an SVG runs no script
    assert client.get("/compare", params={"run": 1, "reference": 99}).status_code == 404
    assert client.get("/compare", params={"run": 1}).status_code == 422


def test_docs_load_only_local_assets(client: TestClient) -> None:
    page = client.get("/docs").text
    assert 'src="/static/swagger-init.js"' in page and not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "cdn" not in page.lower() and "http://" not in page and "https://" not in page
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 500, asset
    assert client.get("/redoc").status_code == 404  # redoc only loads from a CDN: not served


def _token(url: str, *, scope: str = "admin") -> str:
    """A new token in the store at `url` (what `robustgrid token create` prints)."""
    engine = make_engine(url)
    try:
        with session_factory(engine).begin() as s:
            return issue_token(s, scope=scope, owner="browser")[1]
    finally:
        engine.dispose()


def _auto_post(action: str, **fields: str) -> str:
    """A page of another site whose form POSTs to `action` as soon as it loads (a CSRF attempt)."""
    inputs = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in fields.items())
    return (f'<html><body><form id="f" method="post" action="{action}">{inputs}</form>'
            '<script>document.getElementById("f").submit()</script></body></html>')


BROWSER_SKIP = ("needs Debian's chromium (/usr/bin/chromium, `make browser` installs it) and Playwright for Python "
                "(the dev extra)")  # fmt: skip


@pytest.mark.browser
@pytest.mark.skipif(not (Path(CHROMIUM).exists() or shutil.which("chromium"))
                    or importlib.util.find_spec("playwright") is None, reason=BROWSER_SKIP)
def test_pages_in_chromium_with_the_login_cookie_only(settings: Settings, url: str, tmp_path: Path) -> None:
    """Chromium against `robustgrid serve`'s app with nothing added to any request: a logged-out page leads to the
    login form, which lands on it; on the index, a sweep page and the compare page every <img> loads and every link
    of this site answers 200 with the browser's cookie only; /docs renders under the CSP; another site's forms
    cannot log in or out; a link from another site arrives logged in (SameSite=Lax); logout ends the session."""
    from playwright.sync_api import sync_playwright
    from testkit.api_server import free_port, running_api

    token = _token(url)
    with running_api(settings.model_copy(update={"api_port": free_port()}), scope=None) as api, \
            sync_playwright() as pw:  # fmt: skip
        base = api.removesuffix("/api/v1")
        browser = pw.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        violations: list[str] = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)

        page.goto(f"{base}/sweeps/1?sort=params")  # logged out: the login form, remembering the page
        assert page.url == f"{base}/login?next=%2Fsweeps%2F1%3Fsort%3Dparams"
        page.fill("input[name=token]", token)
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.url == f"{base}/sweeps/1?sort=params"  # first time
        (cookie,) = context.cookies()
        assert cookie["name"] == SESSION_COOKIE and cookie["value"].startswith("rgs_") and token not in cookie["value"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"

        checked: dict[str, int] = {}
        for path in ("/", "/sweeps/1", "/compare?run=1&reference=2"):
            page.goto(base + path, wait_until="load")
            assert page.url == base + path
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])")
            assert all(width > 0 for _, width in images), (path, images)
            links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
            for link in links:
                if urlsplit(link).netloc != urlsplit(base).netloc:
                    assert link == "http://127.0.0.1:8265/", link  # only the Ray dashboard is another site's
                    continue
                if link not in checked:
                    checked[link] = page.request.get(link, max_redirects=0).status  # the browser's cookie only
            if path != "/":
                assert images, path
        assert len(checked) >= 20 and {link: st for link, st in checked.items() if st != 200} == {}
        assert any("/plots/curves.svg" in link for link in checked) and any("/plots/eps.png" in link for link in checked)
        assert sum(1 for link in checked if "/api/v1/" in link) >= 8  # plots and curves, by cookie
        page.goto(f"{base}/sweeps/1", wait_until="load")
        page.screenshot(path=str(tmp_path / "sweep.png"), full_page=True)  # kept in pytest's tmp dir to look at

        page.goto(f"{base}/docs")
        page.wait_for_selector(".opblock", timeout=30_000)  # Swagger UI rendered the schema it fetched by cookie
        assert page.locator(".opblock").count() >= 15

        page.route("http://evil.test/**", lambda route: route.fulfill(
            content_type="text/html", body=_auto_post(f"{base}/logout")))
        with page.expect_response(f"{base}/logout") as forged:
            page.goto("http://evil.test/")
        assert forged.value.status == 403
        page.route("http://elsewhere.test/**", lambda route: route.fulfill(
            content_type="text/html", body=f'<a id="go" href="{base}/sweeps/1">a link in a chat</a>'))
        page.goto("http://elsewhere.test/")
        with page.expect_navigation():
            page.click("#go")
        assert page.url == f"{base}/sweeps/1" and page.locator("#sweep-name").inner_text() == "cifar-depths"

        session_id = context.cookies()[0]["value"]
        with page.expect_navigation():
            page.click("form.logout button")
        assert page.url == f"{base}/login" and context.cookies() == []
        context.add_cookies([{"name": SESSION_COOKIE, "value": session_id, "url": base}])  # the old value
        page.goto(f"{base}/compare?run=1&reference=2")
        assert page.url == f"{base}/login?next=%2Fcompare%3Frun%3D1%26reference%3D2"  # ended on the server

        stranger = browser.new_context().new_page()  # another site's form logging a visitor in: refused
        stranger.route("http://evil.test/**", lambda route: route.fulfill(
            content_type="text/html", body=_auto_post(f"{base}/login", token=token, next="/")))
        with stranger.expect_response(f"{base}/login") as forged:
            stranger.goto("http://evil.test/")
        assert forged.value.status == 403 and stranger.context.cookies() == []
        browser.close()
    assert violations == []  # nothing on the pages or in Swagger UI was blocked by the Content-Security-Policy
