"""The FastAPI application: ``create_app(config)``.

The lifespan opens the stores, loads the published model version once (and starts the thread
that swaps in newer ones), and starts the event committer; routes get all of it through one
dependency (:func:`recforge.serving.deps.get_serving`), which tests override. Work that holds
the CPU or waits on the network (a fold-in, a Redis lookup, validating a body) runs in the
thread pool; lookups in memory-mapped lists are microseconds and run on the event loop.

Errors are JSON ``{"detail": "..."}`` with a 4xx status for anything a client sent (422 with
``errors`` listing each bad parameter), 503 when no model is loaded or a store is down.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from threadpoolctl import threadpool_limits

from recforge._version import __version__
from recforge.artifacts import ModelRegistry
from recforge.catalog import CatalogStore
from recforge.config import Config
from recforge.data.store import EventStore
from recforge.lists import StoreUnavailable
from recforge.serving.backend import Backend, open_backend
from recforge.serving.deps import Serving
from recforge.serving.intake import EventIntake
from recforge.serving.live_catalog import CatalogWatcher
from recforge.serving.model import NO_CUTOFF, ModelHolder, ServedModel
from recforge.serving.routers import (
    catalog_items,
    categories,
    events,
    health,
    items,
    model,
    prometheus,
    users,
)
from recforge.serving.security import ApiKeys
from recforge.serving.telemetry import Metrics, MetricsMiddleware

__all__ = ["CONFIG_ENV", "app_from_environment", "create_app"]

log = logging.getLogger("recforge.serving")

#: Where ``recforge serve --workers N`` passes the effective configuration (JSON) to workers.
CONFIG_ENV = "RECFORGE_SERVE_CONFIG"


def create_app(config: Config, *, backend: Backend | None = None, watch: bool = True) -> FastAPI:
    """The API over the models and event store under ``config.home``.

    ``backend`` replaces the one ``serving.store`` names (tests); ``watch=False`` loads the
    published version once at start-up and never polls for another (``app.state.serving.holder.check()``
    still swaps on demand).
    """
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One BLAS thread per process: requests run side by side, and a multi-threaded GEMV per
        # fold-in would only make them fight over the cores.
        blas = threadpool_limits(limits=1, user_api="blas")
        opened = backend or open_backend(config)
        catalog = CatalogStore(config.home)
        holder = ModelHolder(
            ModelRegistry(config.home),
            opened.open_lists,
            catalog=catalog,
            poll_seconds=config.serving.reload_poll_seconds if watch else 0.0,
            on_load=lambda old, new: metrics.model_loaded_now(_labels(old), (new.version, new.model.name)),
            on_failure=lambda name, error: metrics.reloads.labels("failed").inc(),
        )
        holder.check()
        holder.start()

        def cutoff() -> int:
            served = holder.current
            return NO_CUTOFF if served is None else served.cutoff_us

        intake = EventIntake(EventStore(config.home), config, opened.fresh, cutoff, metrics)
        intake.start()
        watcher = CatalogWatcher(
            lambda: None if holder.current is None else holder.current.catalog,
            config.catalog.poll_seconds if watch else 0.0,
            metrics,
        )
        watcher.start()
        app.state.serving = Serving(
            config=config,
            metrics=metrics,
            holder=holder,
            fresh=opened.fresh,
            intake=intake,
            api_keys=ApiKeys(config.serving.api_keys),
            blocking_reads=opened.blocking,
            catalog=catalog,
        )
        # The ~100k objects alive after start-up (modules, the model) move to the permanent
        # generation: a full collection would otherwise walk all of them, a ~100 ms pause of
        # every request in flight, whenever it triggers.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            watcher.stop()
            holder.stop()
            intake.stop()
            opened.close()
            gc.unfreeze()
            blas.restore_original_limits()

    app = FastAPI(
        title="recforge",
        version=__version__,
        description="Recommendations, similar items and event intake over the published model.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    routers = (users.router, items.router, catalog_items.router, categories.router, events.router)
    for router in (*routers, model.router, health.router, prometheus.router):
        app.include_router(router)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _labels(served: ServedModel | None) -> tuple[str, str] | None:
    return None if served is None else (served.version, served.model.name)


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    """422 with one readable line and the list of bad parameters (their values left out)."""
    assert isinstance(error, RequestValidationError)
    problems = [
        {
            "loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
        }
        for e in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in problems)
    return JSONResponse({"detail": summary or "invalid request", "errors": problems}, status_code=422)


async def _store_unavailable(request: Request, error: Exception) -> JSONResponse:
    log.error("%s", error)
    return JSONResponse({"detail": str(error)}, status_code=503)


def app_from_environment() -> FastAPI:
    """The app of a uvicorn worker process: the configuration comes from :data:`CONFIG_ENV`."""
    from recforge.config import load_config

    raw = os.environ.get(CONFIG_ENV)
    if not raw:
        raise RuntimeError(f"{CONFIG_ENV} is not set; start the server with recforge serve")
    import json

    overrides: dict[str, Any] = json.loads(raw)
    return create_app(load_config(environ={}, overrides=overrides))
