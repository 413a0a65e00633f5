"""Logging in to the results pages (service.web_sessions): a form that exchanges an API token for a session cookie,
and logout. Both POSTs refuse a cross-site request (403, nothing set). The token travels in a POST body, never in a
URL; a bad token answers 401 with the form again and sets nothing."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.deps import SettingsDep
from service.pages.render import render_page
from service.web_sessions import (
    LOGIN_PATH,
    clear_session_cookies,
    log_in,
    log_out,
    refuse_cross_site,
    safe_next,
    set_session_cookie,
)

router = APIRouter(include_in_schema=False)
MAX_FORM_BYTES = 4096


@router.get(LOGIN_PATH, response_class=HTMLResponse)
def login_form(next: str = "/") -> HTMLResponse:
    return HTMLResponse(render_page("login.html", next=safe_next(next), error=None))


@router.post(LOGIN_PATH)
async def login(request: Request, settings: SettingsDep) -> Response:
    refuse_cross_site(request)
    form = parse_qs((await request.body())[:MAX_FORM_BYTES].decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    next_url = safe_next((form.get("next") or ["/"])[0])
    try:
        session_id = log_in(request, token)
    except HTTPException as e:  # 401: a missing, unknown or revoked token; the form again, nothing set
        return HTMLResponse(render_page("login.html", next=next_url, error=e.detail), status_code=e.status_code,
                            headers=e.headers)
    response = RedirectResponse(next_url, status_code=303)
    set_session_cookie(response, session_id, settings)
    return response


@router.post("/logout")
def logout(request: Request, settings: SettingsDep) -> RedirectResponse:
    refuse_cross_site(request)
    log_out(request)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    clear_session_cookies(response, settings)
    return response
