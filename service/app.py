"""The FastAPI application: `create_app(settings)`; the schema is migrated (Alembic) at start-up."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from db.engine import make_engine, session_factory, upgrade
from search_spaces.provenance import code_version
from service.auth import LoginRequired, require_page_user, require_reader, require_token
from service.errors import UNAUTHORIZED, install_error_handlers
from service.headers import SecurityHeaders
from service.limits import BodySizeLimit
from service.pages.render import STATIC_DIR
from service.routes import analysis, evaluation, imports, login, pages, plots, presets, results, sweeps
from service.settings import Settings, get_settings
from service.web_sessions import login_redirect

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *, load_references: bool = False) -> FastAPI:
    """The app on `settings`; with `load_references` (what `serve` does) the published results under
    `settings.published_dir` are imported once as reference sweeps (service.references; idempotent)."""
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    app = FastAPI(title="RobustGrid", version=code_version(), openapi_url=None,  # served below, behind a token
                  docs_url=None, redoc_url=None,  # /docs: local assets (service.routes.pages); redoc needs a CDN
                  description="Adversarial-robustness sweeps on Ray Tune, results in SQL. Every route but "
                              "/api/v1/health needs `Authorization: Bearer <token>` "
                              "(`robustgrid token create --scope read|write|admin --owner NAME`).")
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    if load_references:
        from service.references import load_published

        load_published(app.state.sessions, settings.published_dir)
    install_error_handlers(app)
    app.add_exception_handler(LoginRequired, login_redirect)  # a page without a login: 303 to /login?next=...
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)  # CSP, X-Frame-Options, nosniff, Referrer-Policy on every response
    # Every router is included with one of these: API routers take a bearer token; the GET routes a page shows
    # (plots, the schema) a page login too (401 without either); the pages themselves redirect to the login form.
    # tests/service/test_auth.py checks every route answers 401 (API) or 303 (pages) without a credential.
    guarded = {"dependencies": [Depends(require_token)], "responses": UNAUTHORIZED}
    read_guarded = {"dependencies": [Depends(require_reader)], "responses": UNAUTHORIZED}
    page_guarded = {"dependencies": [Depends(require_page_user)]}
    app.include_router(sweeps.router, prefix=API_PREFIX, **guarded)
    app.include_router(evaluation.router, prefix=API_PREFIX, **guarded)
    app.include_router(results.router, prefix=API_PREFIX, **guarded)
    app.include_router(presets.router, prefix=API_PREFIX, **guarded)
    app.include_router(imports.router, prefix=API_PREFIX, **guarded)
    app.include_router(analysis.router, prefix=API_PREFIX, **guarded)
    app.include_router(plots.router, prefix=API_PREFIX, **read_guarded)  # GETs only: the pages embed them
    app.include_router(login.router)  # the form that exchanges a token for a page login (a bad token: 401)
    app.include_router(pages.router, **page_guarded)  # the results pages and /docs (HTML, not in the schema)
    app.mount(pages.STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/openapi.json", include_in_schema=False, **read_guarded)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get(f"{API_PREFIX}/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": code_version()}

    return app
