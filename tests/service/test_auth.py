"""API tokens: every route but the health check answers 401 without a token (a page: 303 to the login form; found
by walking the app's routes, so a new route is covered the day it is added), read tokens cannot write (403), revoked tokens are refused, sweeps
record their owner and a token sees only its owner's sweeps and the imported references (admin: all), and a token
is never stored, logged or returned after `token create` printed it. No Ray: launches go to a closed port."""

from __future__ import annotations

import logging
import re
import socket
from urllib.parse import urlencode
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select
from testkit.api_client import new_token
from typer.testing import CliRunner

from db.engine import make_engine, session_factory, upgrade
from db.models import ApiToken, Sweep
from db.sweeps import create_sweep
from db.tokens import TokenNotFound, create_token, revoke_token
from service.app import create_app
from service.auth import SESSION_COOKIE, hash_token
from service.cli import app as cli
from service.settings import Settings

PUBLIC = {"/api/v1/health", "/login", "/logout"}  # the login form exchanges a token for a page login
PAGES = {"/", "/sweeps/1", "/compare", "/docs"}  # HTML: without a credential, 303 to /login?next=<the page>
SAME_SITE = {"Origin": "http://testserver"}  # what a browser sends with a form of the TestClient's own site
READ_ONLY_POSTS = {"/api/v1/plan", "/login", "/logout"}  # a plan runs and stores nothing; logging in needs no scope
TINY = {"depths": [[1], [1], [1]], "widths": [[1], [1], [1]], "dataset": "synthetic", "n_train": [64],
        "training": {"epochs": 1, "batch_size": 32, "val_size": 32, "n_test": 32}}


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket is closed


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'rg.db'}", storage_path=str(tmp_path / "ray"),
                    ray_address=closed_port_url())


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def operations(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) of every route the app serves, path parameters filled with 1."""
    ops = []
    for route in iter_route_contexts(app.routes):
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                ops.append((method, re.sub(r"\{[^}]+\}", "1", route.path)))
    return ops


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_route_but_health_answers_401_without_a_token(app: FastAPI, client: TestClient) -> None:
    ops = operations(app)
    paths = {p for _, p in ops}
    assert {"/api/v1/sweeps", "/api/v1/results", "/openapi.json", "/api/v1/sweeps/1/cancel"} <= paths  # the walk works
    assert len(ops) >= 15
    assert PAGES <= paths
    token = new_token(app, scope="admin", owner="root")
    for method, path in ops:
        if path in PUBLIC:
            continue
        # no credential, a Basic header, a stale or made-up login cookie, the API token itself as the cookie
        for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Cookie": f"{SESSION_COOKIE}=rgs_made-up"},
                        {"Cookie": f"{SESSION_COOKIE}={token}"}, {"Cookie": f"robustgrid_token={token}"}):
            r = client.request(method, path, headers=headers, json={}, follow_redirects=False)
            if path in PAGES:
                assert r.status_code == 303, (method, path, headers, r.status_code, r.text)
                assert r.headers["location"] == "/login?" + urlencode({"next": path})
            else:
                assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
        r = client.request(method, path, headers=bearer("rg_not-a-token"), json={}, follow_redirects=False)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (method, path)  # pages too
    assert client.get("/api/v1/health").status_code == 200


def test_a_page_login_reads_only_what_a_page_shows_and_never_writes(app: FastAPI, client: TestClient) -> None:
    """The login cookie (of an admin) works on the pages, their plots and the schema; on every other route, and on
    every route that is not a GET, it is no credential at all (401): a cookie can never cause a write (CSRF)."""
    token = new_token(app, scope="admin", owner="root")
    assert client.post("/login", data={"token": token}, headers=SAME_SITE, follow_redirects=False).status_code == 303
    cookie_routes = {"/", "/docs", "/openapi.json", "/sweeps/1", "/compare", "/api/v1/sweeps/1/plots/1.1",
                     "/api/v1/trials/1/plots/curves.1"}  # path parameters filled with 1 (422 for a plot kind)
    for method, path in operations(app):
        if path in PUBLIC:
            continue
        r = client.request(method, path, json={}, follow_redirects=False)
        if method == "GET" and path in cookie_routes:
            assert r.status_code not in (401, 403), (method, path, r.status_code)  # 200, or 404 / 422: no sweep 1
            assert r.status_code != 303, (method, path)
        else:
            assert r.status_code == 401, (method, path, r.status_code, r.text)
    assert client.get("/").status_code == 200 and client.get("/openapi.json").status_code == 200


def test_read_tokens_cannot_write_and_revoked_tokens_are_refused(app: FastAPI, client: TestClient) -> None:
    read, write = new_token(app, scope="read", owner="rita"), new_token(app, scope="write", owner="wes")
    writes = [(m, p) for m, p in operations(app) if m != "GET" and p not in READ_ONLY_POSTS]
    assert {("POST", "/api/v1/sweeps"), ("POST", "/api/v1/sweeps/1/extend"), ("POST", "/api/v1/sweeps/import"),
            ("POST", "/api/v1/sweeps/1/cancel"), ("POST", "/api/v1/sweeps/1/resume")} <= set(writes)
    for method, path in writes:
        r = client.request(method, path, headers=bearer(read), json={})
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert "scope 'read'" in r.json()["detail"]
        assert client.request(method, path, headers=bearer(write), json={}).status_code not in (401, 403)
    assert client.post("/api/v1/plan", headers=bearer(read), json={"spec": TINY}).status_code == 200
    assert client.get("/api/v1/sweeps", headers=bearer(read)).status_code == 200

    with app.state.sessions.begin() as s:
        revoke_token(s, ref=read[:11])  # by prefix
    r = client.get("/api/v1/sweeps", headers=bearer(read))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"detail": f"API token {read[:11]} was revoked"}


def test_sweeps_record_their_owner_and_tokens_see_their_own_and_the_references(app: FastAPI,
                                                                               client: TestClient) -> None:
    alice, bob = new_token(app, scope="write", owner="alice"), new_token(app, scope="read", owner="bob")
    admin = new_token(app, scope="admin", owner="root")
    r = client.post("/api/v1/sweeps", headers=bearer(alice), json={"spec": TINY, "name": "mine"})
    assert r.status_code == 503, r.text  # stored, then its launch failed: Ray is at a closed port
    with app.state.sessions.begin() as s:
        mine = s.scalar(select(Sweep).where(Sweep.name == "mine"))
        assert mine is not None and (mine.owner, mine.status) == ("alice", "failed")
        ref = create_sweep(s, name="paper", spec={}, trials=[], code_version="x")
        ref.imported = True
        other = create_sweep(s, name="nobody's", spec={}, trials=[], code_version="x", owner="carol")
        ids = {"mine": mine.id, "paper": ref.id, "other": other.id}

    def names(token: str) -> list[str]:
        return [sw["name"] for sw in client.get("/api/v1/sweeps", headers=bearer(token)).json()]

    assert names(alice) == ["mine", "paper"]
    assert names(bob) == ["paper"]
    assert names(admin) == ["mine", "paper", "nobody's"]
    assert client.get(f"/api/v1/sweeps/{ids['mine']}", headers=bearer(bob)).status_code == 404
    assert client.get(f"/api/v1/sweeps/{ids['mine']}/trials", headers=bearer(bob)).status_code == 404
    assert client.get(f"/api/v1/sweeps/{ids['paper']}", headers=bearer(bob)).status_code == 200
    assert client.get(f"/api/v1/sweeps/{ids['other']}", headers=bearer(admin)).status_code == 200
    r = client.post(f"/api/v1/sweeps/{ids['other']}/cancel", headers=bearer(alice))
    assert r.status_code == 404 and r.json() == {"detail": f"sweep {ids['other']} not found"}


def test_pages_and_the_schema_take_a_login_api_routes_only_the_header(app: FastAPI, client: TestClient) -> None:
    token = new_token(app, scope="read", owner="rita")
    client.cookies.set("robustgrid_token", token)  # what earlier versions set: no longer a credential
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/", follow_redirects=False).status_code == 303
    client.cookies.clear()
    assert client.post("/login", data={"token": token}, headers=SAME_SITE, follow_redirects=False).status_code == 303
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/sweeps").status_code == 401  # API clients send the header
    client.cookies.clear()
    assert client.get("/openapi.json").status_code == 401
    schema = client.get("/openapi.json", headers=bearer(token)).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "An API token: `robustgrid token create --scope "
                                                           "read|write|admin`"}
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if path in PUBLIC:
                assert "security" not in op and "401" not in op["responses"]
                continue
            assert {"HTTPBearer": []} in op["security"], (method, path)
            assert "401" in op["responses"], (method, path)
            assert ({"APIKeyCookie": []} in op["security"]) == ("/plots/" in path), (method, path)


def test_tokens_are_hashed_and_never_logged_or_returned(settings: Settings, caplog: pytest.LogCaptureFixture,
                                                        tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    created = runner.invoke(cli, ["token", "create", "--owner", "alice", "--scope", "write",
                                  "--database-url", settings.database_url])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert re.fullmatch(r"rg_[A-Za-z0-9_-]{43}", token), token  # 32 random bytes, URL-safe base64
    bodies = []
    with TestClient(create_app(settings)) as c:
        bodies += [c.get("/api/v1/sweeps", headers=bearer(token)).text,
                   c.post("/api/v1/sweeps", headers=bearer(token), json={"spec": TINY, "name": "s"}).text,
                   c.get("/openapi.json", headers=bearer(token)).text]
        with c.app.state.sessions() as s:  # type: ignore[attr-defined]
            row = s.scalar(select(ApiToken))
            assert row is not None and row.token_hash == hash_token(token) != token and row.prefix == token[:11]
    listed = runner.invoke(cli, ["token", "list", "--json", "--database-url", settings.database_url])
    revoked = runner.invoke(cli, ["token", "revoke", token[:11], "--database-url", settings.database_url])
    assert revoked.exit_code == 0 and "revoked token 1" in revoked.stdout
    with TestClient(create_app(settings)) as c:
        refused = c.get("/api/v1/sweeps", headers=bearer(token))
        assert refused.status_code == 401
    assert '"scope": "write"' in listed.stdout and '"owner": "alice"' in listed.stdout
    for text in [*bodies, listed.stdout, revoked.stdout, refused.text, caplog.text]:
        assert token not in text and token[11:] not in text
    db = (tmp_path / "rg.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("rg.db-*"))
    assert token.encode() not in db


def test_token_store_refuses_bad_input(settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with session_factory(engine).begin() as s:
        with pytest.raises(ValueError, match="^scope: must be one of"):
            create_token(s, token_hash="h", prefix="rg_x", scope="root", owner="a")
        with pytest.raises(ValueError, match="^owner: must not be empty"):
            create_token(s, token_hash="h", prefix="rg_x", scope="read", owner=" ")
        create_token(s, token_hash="h1", prefix="rg_same", scope="read", owner="a")
        create_token(s, token_hash="h2", prefix="rg_same", scope="read", owner="b")
        with pytest.raises(TokenNotFound, match="2 tokens with id or prefix 'rg_same'"):
            revoke_token(s, ref="rg_same")
        assert revoke_token(s, ref="2").owner == "b"  # by id
    bad = CliRunner().invoke(cli, ["token", "revoke", "nope", "--database-url", settings.database_url])
    assert bad.exit_code == 2 and "error: token: no token with id or prefix 'nope'" in bad.output


def test_login_form_sets_a_session_cookie_only_for_a_valid_token(app: FastAPI, client: TestClient) -> None:
    token = new_token(app, scope="read", owner="lena")
    client.cookies.clear()
    assert client.get("/login").status_code == 200 and 'name="token"' in client.get("/login").text
    bad = client.post("/login", data={"token": "rg_wrong"}, headers=SAME_SITE, follow_redirects=False)
    assert bad.status_code == 401 and "set-cookie" not in bad.headers
    assert "unknown API token" in bad.text and 'name="token"' in bad.text  # the form again, with the reason
    good = client.post("/login", data={"token": token, "next": "//evil.example/x"}, headers=SAME_SITE,
                       follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/"  # no open redirect
    cookie = good.headers["set-cookie"]
    assert f"{SESSION_COOKIE}=rgs_" in cookie and token not in cookie
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie and "Secure" not in cookie
    assert client.get("/").status_code == 200  # the page now reads the cookie
    assert client.post("/logout", headers=SAME_SITE, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303
