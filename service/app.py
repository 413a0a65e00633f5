"""The FastAPI application: `create_app(settings)`; the schema is migrated (Alembic) at start-up."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from db.engine import make_engine, session_factory, upgrade
from search_spaces.provenance import code_version
from service.pages.render import STATIC_DIR
from service.routes import analysis, pages, plots, results, sweeps
from service.settings import Settings, get_settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    app = FastAPI(title="RobustGrid", version=code_version(),
                  description="Adversarial-robustness sweeps on Ray Tune, results in SQL.",
                  docs_url=None, redoc_url=None)  # /docs: local assets (service.routes.pages); redoc needs a CDN
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.include_router(sweeps.router, prefix=API_PREFIX)
    app.include_router(results.router, prefix=API_PREFIX)
    app.include_router(analysis.router, prefix=API_PREFIX)
    app.include_router(plots.router, prefix=API_PREFIX)
    app.include_router(pages.router)  # the results pages and /docs (HTML, not in the schema)
    app.mount(pages.STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")

    @app.get(f"{API_PREFIX}/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": code_version()}

    return app
