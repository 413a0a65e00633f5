"""Logging in to the results pages (service.web_sessions) over HTTP: the cookie holds a server-side session, never
the token, and a leaked cookie is no bearer token; logout, revocation and expiry end a session on the server; a
logged-out page answers 303 to the login form, which lands on the page asked for; login and logout refuse
cross-site POSTs (403, nothing set); every response carries the security headers. The browser test of the same
flow is tests/service/test_pages.py::test_pages_in_chromium_with_the_login_cookie_only."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from testkit.api_client import new_token

from db.models import WebSession, utcnow
from db.tokens import revoke_token
from service.app import create_app
from service.auth import SESSION_COOKIE, hash_token
from service.headers import PAGE_POLICY, SVG_POLICY
from service.settings import Settings
from service.web_sessions import safe_next

SITE = "http://testserver"  # the TestClient's own origin
SAME_SITE = {"Origin": SITE}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "ray"))


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def _login(client: TestClient, token: str, next_url: str = "/", **headers: str) -> str:
    """Log in through the form; the session id the cookie now holds."""
    r = client.post("/login", data={"token": token, "next": next_url}, headers=headers or SAME_SITE,
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return client.cookies[SESSION_COOKIE]


def _n_sessions(app: FastAPI) -> int:
    with app.state.sessions() as s:
        return s.scalar(select(func.count()).select_from(WebSession))


def test_the_cookie_is_a_server_side_session_and_a_leaked_one_is_no_bearer_token(app: FastAPI,
                                                                                client: TestClient) -> None:
    token = new_token(app, scope="admin", owner="root")
    session_id = _login(client, token)
    assert re.fullmatch(r"rgs_[A-Za-z0-9_-]{43}", session_id) and token not in session_id
    with app.state.sessions() as s:
        row = s.scalar(select(WebSession))
        assert row is not None and row.session_hash == hash_token(session_id)  # only the hash is stored
        hours = (row.expires_at - row.created_at).total_seconds() / 3600
    assert hours == pytest.approx(12.0, abs=1e-3)  # web_session_hours' default, absolute
    client.cookies.clear()
    leaked = {"Authorization": f"Bearer {session_id}"}
    for path in ("/api/v1/sweeps", "/api/v1/results", "/openapi.json"):
        assert client.get(path, headers=leaked).status_code == 401, path
    assert client.get("/", headers=leaked, follow_redirects=False).status_code == 401
    assert client.post("/api/v1/sweeps", headers=leaked, json={}).status_code == 401


def test_secure_cookie_when_served_over_https(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "ray"),
                        cookie_secure=True, web_session_hours=2)
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver") as client:
        r = client.post("/login", data={"token": new_token(app)}, headers={"Origin": "https://testserver"},
                        follow_redirects=False)
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    assert "; Secure" in cookie and "Max-Age=7200" in cookie and "SameSite=lax" in cookie


def test_a_logged_out_page_redirects_to_the_login_which_lands_on_it(app: FastAPI, client: TestClient) -> None:
    token = new_token(app, scope="read", owner="lena")
    r = client.get("/compare?run=1&reference=2", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fcompare%3Frun%3D1%26reference%3D2"
    form = client.get(r.headers["location"]).text
    next_url = html.unescape(re.search(r'name="next" value="([^"]*)"', form).group(1))
    assert next_url == "/compare?run=1&reference=2"
    r = client.post("/login", data={"token": token, "next": next_url}, headers=SAME_SITE, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/compare?run=1&reference=2"  # first time
    assert client.get("/sweeps/5", follow_redirects=False).status_code == 404  # logged in: the page's own answer
    assert client.get("/api/v1/sweeps").status_code == 401  # an API route never redirects


NEXT_TARGETS = {  # what the form's `next` says -> where the login lands
    "/sweeps/1?sort=params&desc=1": "/sweeps/1?sort=params&desc=1", "/": "/", "//evil.example/x": "/",
    "/\\evil.example": "/", "\\\\evil.example": "/", "/\t/evil.example": "/", "/\n/evil.example": "/",
    "https://evil.example/": "/", "evil.example": "/", "": "/", "javascript:alert(1)": "/",
}  # fmt: skip
CROSS_SITE = [  # the headers of a POST from another site's page (or of a client that says nothing)
    {"Origin": "https://evil.example"}, {"Origin": "null"}, {"Origin": "http://testserver.evil.example"},
    {"Origin": "http://testserver:8080"}, {"Referer": "https://evil.example/form"}, {},
]  # fmt: skip


def test_next_is_a_path_of_this_site_only(app: FastAPI, client: TestClient) -> None:
    token = new_token(app)
    assert safe_next("/\\evil.example") == "/" and safe_next("/a\\b") == "/"  # browsers read \ as /
    for target, lands in NEXT_TARGETS.items():
        assert safe_next(target) == lands, target
        r = client.post("/login", data={"token": token, "next": target}, headers=SAME_SITE, follow_redirects=False)
        assert r.headers["location"] == lands, target


def test_cross_site_login_and_logout_are_refused_and_set_nothing(app: FastAPI, client: TestClient) -> None:
    token = new_token(app)
    for headers in CROSS_SITE:
        r = client.post("/login", data={"token": token}, headers=headers, follow_redirects=False)
        assert r.status_code == 403 and "set-cookie" not in r.headers, (headers, r.text)
        assert "cross-site request refused" in r.json()["detail"] and _n_sessions(app) == 0
    session_id = _login(client, token)
    for headers in CROSS_SITE:
        r = client.post("/logout", headers=headers, follow_redirects=False)
        assert r.status_code == 403 and "set-cookie" not in r.headers, headers
    assert _n_sessions(app) == 1 and client.get("/", follow_redirects=False).status_code == 200
    assert client.cookies[SESSION_COOKIE] == session_id


def test_same_site_referer_is_enough_without_an_origin(app: FastAPI, client: TestClient) -> None:
    _login(client, new_token(app), Referer=f"{SITE}/login?next=%2F")
    assert client.get("/", follow_redirects=False).status_code == 200


def test_logout_ends_the_session_on_the_server(app: FastAPI, client: TestClient) -> None:
    session_id = _login(client, new_token(app))
    r = client.post("/logout", headers=SAME_SITE, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert f'{SESSION_COOKIE}=""' in r.headers["set-cookie"] and _n_sessions(app) == 0
    client.cookies.set(SESSION_COOKIE, session_id)  # the old value, kept (or stolen) after the logout
    r = client.get("/sweeps/1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fsweeps%2F1"
    assert f'{SESSION_COOKIE}=""' in r.headers["set-cookie"]  # the browser may forget it
    assert client.get("/api/v1/sweeps/1/plots/pareto.png").status_code == 401


def test_revoking_the_token_ends_its_sessions(app: FastAPI, client: TestClient) -> None:
    token = new_token(app, scope="read", owner="rita")
    _login(client, token)
    assert client.get("/", follow_redirects=False).status_code == 200
    with app.state.sessions.begin() as s:
        revoke_token(s, ref=token[:11])
    assert client.get("/", follow_redirects=False).status_code == 303
    assert client.get("/openapi.json").status_code == 401


def test_an_expired_session_redirects_to_the_login(app: FastAPI, client: TestClient) -> None:
    session_id = _login(client, new_token(app))
    with app.state.sessions.begin() as s:
        s.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    r = client.get("/docs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fdocs"
    client.cookies.clear()
    _login(client, new_token(app))  # the next login purges the expired row
    with app.state.sessions() as s:
        assert s.scalar(select(WebSession.session_hash)) != hash_token(session_id) and _n_sessions(app) == 1


def test_security_headers_on_every_response(app: FastAPI, client: TestClient) -> None:
    _login(client, new_token(app))
    answers = {path: client.get(path, follow_redirects=False) for path in (
        "/", "/docs", "/login", "/static/style.css", "/api/v1/health", "/api/v1/sweeps/9", "/sweeps/9")}
    client.cookies.clear()
    answers["logged out"] = client.get("/", follow_redirects=False)
    answers["cross-site POST"] = client.post("/login", data={"token": "x"}, headers={"Origin": "https://e.example"})
    for what, r in answers.items():
        assert r.headers["x-frame-options"] == "DENY", what
        assert r.headers["x-content-type-options"] == "nosniff", what
        assert r.headers["referrer-policy"] == "same-origin", what
        assert r.headers["content-security-policy"] == PAGE_POLICY, what
    for directive in ("default-src 'self'", "script-src 'self'", "img-src 'self' data:", "frame-ancestors 'none'"):
        assert directive in PAGE_POLICY
    assert "unsafe-inline" not in PAGE_POLICY and "script-src" not in SVG_POLICY  # SVGs run no script
    for page in ("/", "/docs", "/login"):  # no inline script or style left for the policy to block
        text = answers[page].text if page != "/login" else client.get("/login").text
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", text) and " style=" not in text, page
