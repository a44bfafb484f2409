"""The FastAPI application: ``create_app(config)``.

The lifespan opens the stores, loads the published model version once (and starts the thread
that swaps in newer ones and follows experiments), and starts the event committer, the
impression writer and the online-metrics export; routes get all of it as one
:class:`~recforge.serving.deps.Serving` object. Work that holds the CPU or waits on the network
(a fold-in, a Redis lookup, validating a body) runs in the thread pool; lookups in
memory-mapped lists are microseconds and run on the event loop.

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
from fastapi.telemetry import TelemetryConfig
from threadpoolctl import threadpool_limits

from recforge._version import __version__
from recforge.artifacts import ModelRegistry
from recforge.catalog import CatalogStore
from recforge.config import Config
from recforge.data.store import EventStore
from recforge.lists import StoreUnavailable
from recforge.online.experiments import ExperimentBook
from recforge.online.impressions import ImpressionStore
from recforge.online.recorder import ImpressionLog
from recforge.serving.backend import Backend, open_backend
from recforge.serving.dashboard import Dashboard, mount_dashboard
from recforge.serving.dashboard.live import registry_sample
from recforge.serving.deps import Serving
from recforge.serving.erasure import Erasures
from recforge.serving.intake import EventIntake
from recforge.serving.live_catalog import CatalogWatcher
from recforge.serving.model import ModelHolder, Routing, ServedModel
from recforge.serving.online_export import OnlineExport
from recforge.serving.routers import (
    batch,
    catalog_items,
    categories,
    erasures,
    events,
    health,
    items,
    model,
    prometheus,
    users,
)
from recforge.serving.security import ApiKeys
from recforge.serving.telemetry import Metrics, MetricsMiddleware, ProcessProbe

__all__ = ["CONFIG_ENV", "SECRET_VARIABLES", "app_from_environment", "create_app"]

log = logging.getLogger("recforge.serving")
#: uvicorn's own logger: what it prints reaches the server's console in every worker process
console = logging.getLogger("uvicorn.error")

#: The path of the file (mode 0600, in a private directory) in which ``recforge serve --workers
#: N`` passes the effective configuration (JSON, keys included) to its workers.
CONFIG_ENV = "RECFORGE_SERVE_CONFIG"
#: Environment variables holding keys, not passed on to worker processes.
SECRET_VARIABLES = (
    "RECFORGE_API_KEYS",
    "RECFORGE_ADMIN_KEYS",
    "RECFORGE_SERVING__API_KEYS",
    "RECFORGE_SERVING__ADMIN_KEYS",
)


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
        impressions = None
        if config.experiments.impressions:
            impressions = ImpressionLog(
                ImpressionStore(config.home),
                config.experiments.flush_ms,
                metrics.impressions_written,
                sync_ms=config.experiments.sync_ms,
            )
            impressions.start()
        catalog = CatalogStore(config.home)
        holder = ModelHolder(
            ModelRegistry(config.home),
            opened.open_lists,
            catalog=catalog,
            poll_seconds=config.serving.reload_poll_seconds if watch else 0.0,
            on_load=lambda old, new: _loaded(metrics, old, new),
            on_failure=lambda name, error: metrics.reloads.labels("failed").inc(),
            experiments=ExperimentBook(config.home),
            impressions=impressions,
            on_routing=lambda routing: metrics.routing_now(_arms(routing)),
        )
        holder.check()
        holder.start()
        intake = EventIntake(EventStore(config.home), config, opened.fresh, holder.cutoff_us, metrics)
        intake.start()
        probe = ProcessProbe(metrics)
        probe.start()
        export = OnlineExport(config, metrics)
        export.start()
        watcher = CatalogWatcher(
            holder.catalogs,
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
            admin_keys=ApiKeys(config.serving.admin_keys),
            erasures=Erasures(intake.store.tombstones),
            catalog=catalog,
        )
        dashboard = None
        if config.serving.dashboard:
            dashboard = Dashboard(
                config,
                lambda: holder.current,
                fresh=opened.fresh.get,
                metrics_source=lambda at: registry_sample(metrics, at),
                # what its first refresh loads (digest parts, Optuna for the studies: ~100k
                # objects) joins the permanent generation too, as below
                on_first_refresh=_freeze,
            )
            dashboard.start()
            app.state.dashboard = dashboard
        # The ~100k objects alive after start-up (modules, the model) move to the permanent
        # generation: a full collection would otherwise walk all of them, a ~100 ms pause of
        # every request in flight, whenever it triggers.
        _freeze()
        try:
            yield
        finally:
            if dashboard is not None:
                dashboard.stop()
            await probe.stop()
            export.stop()
            watcher.stop()
            holder.stop()
            intake.stop()
            if impressions is not None:
                impressions.stop()
            opened.close()
            gc.unfreeze()
            blas.restore_original_limits()

    app = FastAPI(
        title="recforge",
        version=__version__,
        description="Recommendations, similar items and event intake over the published model.",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry looks for providers on every request unless told not to
        telemetry=_opentelemetry(config.serving.opentelemetry),
    )
    app.state.metrics = metrics
    routers = (
        users.router,
        batch.router,
        items.router,
        catalog_items.router,
        categories.router,
        events.router,
        erasures.router,
    )
    for router in (*routers, model.router, health.router, prometheus.router):
        app.include_router(router)
    if config.serving.dashboard:
        mount_dashboard(app)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _opentelemetry(enabled: bool) -> TelemetryConfig | None:
    """FastAPI's telemetry settings: its defaults when ``enabled``, else every signal off."""
    return None if enabled else {"tracing": False, "metrics": False, "logs": False}


def _loaded(metrics: Metrics, old: ServedModel | None, new: ServedModel) -> None:
    """A version swap: counted, and said on the server's console (uvicorn's logger)."""
    metrics.model_loaded_now(_labels(old), (new.version, new.model.name))
    was = f" (was {old.version})" if old is not None else ""
    console.info("serving model version %s (%s)%s", new.version, new.model.name, was)


def _freeze() -> None:
    """Move every object alive now to the permanent generation (``gc.freeze``)."""
    gc.collect()
    gc.freeze()


def _labels(served: ServedModel | None) -> tuple[str, str] | None:
    return None if served is None else (served.version, served.model.name)


def _arms(routing: Routing | None) -> list[tuple[str, str, str]]:
    if routing is None:
        return []
    name = routing.experiment.name
    return [(name, "control", routing.control.version), (name, "treatment", routing.treatment.version)]


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
    """The app of a uvicorn worker process: the configuration comes from the file that
    :data:`CONFIG_ENV` names."""
    import json

    from recforge.config import load_config

    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set; start the server with recforge serve")
    with open(path) as handle:
        overrides: dict[str, Any] = json.load(handle)
    return create_app(load_config(environ={}, overrides=overrides))
