"""Prometheus metrics of one API process, and the ASGI middleware that times every request.

Metric names (all prefixed ``recforge_``): ``http_requests_total`` and
``http_request_duration_seconds`` by route template (``/v1/users/{user_id}/recommendations``,
never the raw path, so ids cannot blow up the label space), method and status;
``model_info`` (the served version, value 1), ``model_loaded_timestamp_seconds``,
``model_reloads_total`` by result; ``recommendations_total`` by endpoint and source;
``foldins_total`` and ``foldin_duration_seconds``; ``fallbacks_total`` by reason;
``events_accepted_total``, ``events_duplicate_total``, ``events_rejected_total``;
``event_commit_events`` and ``event_commit_duration_seconds`` (the group commit);
``fresh_users``.

Each app has its own registry, so several apps (tests) never clash. With several worker
processes, set ``PROMETHEUS_MULTIPROC_DIR`` (``recforge serve --workers N`` does): every
process writes its values there and ``/metrics`` adds them up.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsMiddleware"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip


class Metrics:
    """The metrics of one app."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "recforge_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "recforge_http_request_duration_seconds",
            "HTTP request latency in seconds by route template, method and status.",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.model_info = Gauge(
            "recforge_model_info",
            "The served model version (value 1).",
            ["version", "model"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.model_loaded = Gauge(
            "recforge_model_loaded_timestamp_seconds",
            "When the served model version was loaded (Unix time).",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.reloads = Counter(
            "recforge_model_reloads", "Model version loads by result.", ["result"], registry=registry
        )
        self.recommendations = Counter(
            "recforge_recommendations",
            "Answers by endpoint (users, items) and source.",
            ["endpoint", "source"],
            registry=registry,
        )
        self.foldins = Counter("recforge_foldins", "Fold-in recommendations computed.", registry=registry)
        self.foldin_latency = Histogram(
            "recforge_foldin_duration_seconds",
            "Time to compute a fold-in recommendation, in seconds.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.fallbacks = Counter(
            "recforge_fallbacks",
            "Popular-list answers by reason: unknown_user, unknown_item, no_list, store_unavailable.",
            ["reason"],
            registry=registry,
        )
        self.events_accepted = Counter(
            "recforge_events_accepted", "Events stored durably.", registry=registry
        )
        self.events_duplicate = Counter(
            "recforge_events_duplicate",
            "Valid events already in the store (not stored again).",
            registry=registry,
        )
        self.events_rejected = Counter(
            "recforge_events_rejected", "Events rejected by validation.", registry=registry
        )
        self.commit_events = Histogram(
            "recforge_event_commit_events",
            "Events per group commit (one event-store segment).",
            buckets=(1, 10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 200_000),
            registry=registry,
        )
        self.commit_latency = Histogram(
            "recforge_event_commit_duration_seconds",
            "Time to write and fsync one group commit, in seconds.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.fresh_users = Gauge(
            "recforge_fresh_users",
            "Users with fresh events held in this process (in-memory store).",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.catalog_items = Counter(
            "recforge_catalog_items",
            "Catalog items written over HTTP, by outcome: upserted, rejected.",
            ["outcome"],
            registry=registry,
        )
        self.catalog_seq = Gauge(
            "recforge_catalog_seq",
            "The last catalog change number this process applied to its answers.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = self._children[key] = (self.requests.labels(*labels), self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    def model_loaded_now(self, previous: tuple[str, str] | None, current: tuple[str, str]) -> None:
        if previous is not None:
            with contextlib.suppress(KeyError):
                self.model_info.remove(*previous)
        self.model_info.labels(*current).set(1)
        self.model_loaded.set(time.time())
        self.reloads.labels("loaded").inc()

    def render(self) -> bytes:
        """The text exposition of this process (or of all processes in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            combined = CollectorRegistry()
            MultiProcessCollector(combined)
            return generate_latest(combined)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request by the route template it matched."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(
                template, scope.get("method", ""), status, time.perf_counter() - started
            )
