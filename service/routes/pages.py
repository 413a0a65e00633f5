"""The results page (HTML) and the interactive API docs served from local assets. Thin: each route calls one view
of service.pages.views and fills a template. Every route here is on `router`, so a dependency (a login or a token;
service.auth.require_page_user: 303 to the login form without one) added at `include_router` covers every page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from db.contract import DEFAULT_ATTACK, Checkpoint
from db.sweeps import NotFound
from search_spaces.spec import SpecError
from service.deps import DbId, PageUserDep, SessionDep, SettingsDep, SweepId, SweepIdQuery
from service.errors import unprocessable
from service.pages.render import render_page
from service.pages.views import PAGE_SIZE, compare_view, index_view, sweep_view
from service.visibility import check_visible, visible_sweep

router = APIRouter(include_in_schema=False)

STATIC_PREFIX = "/static"
DOCS_PATH = "/docs"
OPENAPI_PATH = "/openapi.json"  # service.app serves the schema there


def _http(e: Exception) -> HTTPException:
    if isinstance(e, NotFound):
        return HTTPException(status_code=404, detail=str(e))
    assert isinstance(e, SpecError)
    return unprocessable(e.field, e.reason, where="query")


@router.get("/", response_class=HTMLResponse)
def index(session: SessionDep, settings: SettingsDep, principal: PageUserDep) -> HTMLResponse:
    view = index_view(session, settings=settings, visible_to=principal.visible_owner)
    return HTMLResponse(render_page("index.html", user=principal.owner, **view))


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(sweep_id: SweepId, session: SessionDep, principal: PageUserDep, sort: str = "idx", desc: bool = False,
               offset: int = 0, limit: int = PAGE_SIZE, attack: str = DEFAULT_ATTACK,
               checkpoint: Checkpoint = "best") -> HTMLResponse:
    visible_sweep(session, principal, sweep_id)
    try:
        view = sweep_view(session, sweep_id=sweep_id, sort=sort, desc=desc, offset=offset, limit=limit,
                          attack=attack, checkpoint=checkpoint)
    except (NotFound, SpecError) as e:
        raise _http(e) from None
    return HTMLResponse(render_page("sweep.html", user=principal.owner, **view))


@router.get("/compare", response_class=HTMLResponse)
def compare(run: SweepIdQuery, session: SessionDep, principal: PageUserDep,
            reference: Annotated[list[DbId], Query(min_length=1)],
            x: str = "params", attack: str = DEFAULT_ATTACK) -> HTMLResponse:
    check_visible(session, principal, [run, *reference])
    try:
        view = compare_view(session, run=run, reference=reference, attack=attack, x=x)
    except (NotFound, SpecError) as e:
        raise _http(e) from None
    return HTMLResponse(render_page("compare.html", user=principal.owner, **view))


@router.get(DOCS_PATH, response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    """Swagger UI from /static/swagger-ui (swagger-ui-dist 5, vendored) started by /static/swagger-init.js: no CDN,
    no inline script (the Content-Security-Policy allows none). Its schema request carries the login cookie."""
    return HTMLResponse(render_page("docs.html", title=f"{request.app.title} API", openapi_url=OPENAPI_PATH))
