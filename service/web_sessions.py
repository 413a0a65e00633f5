"""Logging in to the results pages: an API token, pasted once into the login form, is exchanged for a server-side
session (db.web_sessions). The browser keeps only the session's random id, in the `robustgrid_session` cookie
(HttpOnly, SameSite=Lax, Path=/, Secure when `cookie_secure`), so a leaked cookie is not an API token. A session
lasts `web_session_hours` from the login (absolute), ends on logout, and dies with its token's revocation.

Login and logout are POSTs that a page of another site could forge (CSRF): both answer 403, and set nothing,
unless the request's Origin (or, without one, its Referer) names the host the request was sent to. The cookie
itself is read only by GET routes (service.auth), so it can never cause a write.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from db.models import utcnow
from db.web_sessions import create_web_session, end_web_session, purge_expired_sessions
from service.auth import SESSION_COOKIE, LoginRequired, authenticate, forbidden, hash_token
from service.settings import Settings

log = logging.getLogger(__name__)

SESSION_PREFIX = "rgs_"  # a session id: "rgs_" + 32 random bytes (URL-safe base64); only its hash is stored
LEGACY_COOKIE = "robustgrid_token"  # earlier versions kept the API token itself in this cookie: deleted on sight
LOGIN_PATH = "/login"


def safe_next(target: str) -> str:
    """A path on this site to land on after the login, else "/": it starts with one "/" (no scheme, no host), has no
    backslash (browsers read `/\\evil.com` as `//evil.com`) and no control character (they drop tabs and newlines,
    so `/\\t/evil.com` is `//evil.com` too). An open redirect would hand a fresh login to another site."""
    ok = (target.startswith("/") and not target.startswith("//") and "\\" not in target
          and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in target))  # fmt: skip
    return target if ok else "/"


def same_origin(request: Request) -> bool:
    """True when a POST comes from a page of this site: its Origin header (else its Referer) has the host and port
    the request was sent to. Browsers send one of them on every form POST; none, or `Origin: null`, is refused.
    Behind a reverse proxy the proxy must pass the client's Host header on (nginx: `proxy_set_header Host $host`)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host")
    if not source or not host:
        return False
    parts = urlsplit(source)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def refuse_cross_site(request: Request) -> None:
    """403 unless the POST comes from this site (same_origin)."""
    if not same_origin(request):
        log.info("a cross-site %s %s was refused (origin %r)", request.method, request.url.path,
                 request.headers.get("origin") or request.headers.get("referer"))
        raise forbidden("cross-site request refused: the Origin (or Referer) header must name this site")


def log_in(request: Request, token: str) -> str:
    """A new session for `token` (401 when it is missing, unknown or revoked); returns the session id for the cookie.
    Expired sessions of everyone are purged on the way."""
    principal = authenticate(request, token)
    settings: Settings = request.app.state.settings
    session_id = SESSION_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with request.app.state.sessions.begin() as session:
        purge_expired_sessions(session, now=now)
        create_web_session(session, session_hash=hash_token(session_id), token_id=principal.token_id,
                           expires_at=now + timedelta(hours=settings.web_session_hours))
    return session_id


def log_out(request: Request) -> bool:
    """End the request's session (its row is deleted); False when it had none."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return False
    with request.app.state.sessions.begin() as session:
        return end_web_session(session, session_hash=hash_token(session_id))


def set_session_cookie(response: Response, session_id: str, settings: Settings) -> None:
    response.set_cookie(SESSION_COOKIE, session_id, max_age=int(settings.web_session_hours * 3600), path="/",
                        httponly=True, samesite="lax", secure=settings.cookie_secure)
    response.delete_cookie(LEGACY_COOKIE, path="/")


def clear_session_cookies(response: Response, settings: Settings) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=settings.cookie_secure)
    response.delete_cookie(LEGACY_COOKIE, path="/")


def login_url(next_url: str) -> str:
    return f"{LOGIN_PATH}?{urlencode({'next': safe_next(next_url)})}"


async def login_redirect(request: Request, exc: Exception) -> Response:
    """LoginRequired (a page asked for without a live session): 303 to the login form, which lands on the page."""
    assert isinstance(exc, LoginRequired)
    response = RedirectResponse(login_url(exc.next_url), status_code=303)
    if SESSION_COOKIE in request.cookies:  # an expired or ended session: the browser may forget it
        clear_session_cookies(response, request.app.state.settings)
    return response

