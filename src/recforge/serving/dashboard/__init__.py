"""The web dashboard: what the recommender does and why, served under ``/ui``.

Six server-rendered pages (Overview, Pipeline, Models, Users, Items, Tuning) with charts drawn
as inline SVG by :mod:`.charts` (no script, no CDN). ``recforge serve`` mounts it beside the API
(``serving.dashboard``), reading the server's own metrics, models and fresh events;
:func:`create_dashboard_app` serves it alone over a home (``recforge dashboard``). Reading
needs no key; publishing and rolling back need an admin key (``serving.admin_keys``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from recforge._version import __version__
from recforge.artifacts import ModelRegistry
from recforge.config import Config
from recforge.serving.dashboard.live import fetch_url
from recforge.serving.dashboard.routes import PREFIX, STATIC, router
from recforge.serving.dashboard.state import Dashboard
from recforge.serving.model import ModelHolder
from recforge.serving.stores import MmapListStore

__all__ = ["PREFIX", "Dashboard", "create_dashboard_app", "mount_dashboard"]


def mount_dashboard(app: FastAPI) -> None:
    """Add the pages and their static files to ``app`` (which sets ``app.state.dashboard``)."""
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="dashboard-static")


def create_dashboard_app(
    config: Config, *, metrics_url: str | None = None, refresh_seconds: float = 30.0
) -> FastAPI:
    """The dashboard alone over ``config.home`` (no API, no event intake): the published model
    is loaded and reloaded as the server does; ``metrics_url`` (a server's ``/metrics``) feeds
    the Overview's traffic numbers."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder = ModelHolder(
            ModelRegistry(config.home), MmapListStore, poll_seconds=config.serving.reload_poll_seconds
        )
        holder.check()
        holder.start()
        dashboard = Dashboard(
            config,
            lambda: holder.current,
            metrics_source=fetch_url(metrics_url) if metrics_url else None,
            metrics_name=metrics_url or "no server",
            refresh_seconds=refresh_seconds,
        )
        dashboard.start()
        app.state.dashboard = dashboard
        try:
            yield
        finally:
            dashboard.stop()
            holder.stop()

    app = FastAPI(
        title="recforge dashboard", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    mount_dashboard(app)

    @app.get("/", include_in_schema=False)
    def home() -> Any:
        return RedirectResponse(f"{PREFIX}/")

    return app
