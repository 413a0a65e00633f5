"""Logging in to the results pages: a form that takes an API token and sets it as the `robustgrid_token` cookie
(HttpOnly, SameSite=Strict), so a browser can open the pages the bearer header guards for API clients. The token
travels in a POST body, never in a URL; a bad token answers 401 and sets nothing."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from service.auth import COOKIE_NAME, authenticate
from service.pages.render import render_page

router = APIRouter(include_in_schema=False)
MAX_FORM_BYTES = 4096


def _safe_next(target: str) -> str:
    """Only a path on this site (no scheme, no host): an open redirect would hand the cookie's owner elsewhere."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login", response_class=HTMLResponse)
def login_form(next: str = "/") -> HTMLResponse:
    return HTMLResponse(render_page("login.html", next=_safe_next(next), error=None))


@router.post("/login")
async def login(request: Request) -> RedirectResponse:
    form = parse_qs((await request.body())[:MAX_FORM_BYTES].decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    authenticate(request, token)  # 401 (and no cookie) for a missing, unknown or revoked token
    response = RedirectResponse(_safe_next((form.get("next") or ["/"])[0]), status_code=303)
    response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="strict", max_age=30 * 24 * 3600)
    return response


@router.post("/logout")
def logout() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE_NAME)
    return response
