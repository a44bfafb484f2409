"""Prometheus metrics of one API process, and the ASGI middleware that times every request.

Metric names (all prefixed ``recforge_``): ``http_requests_total`` and
``http_request_duration_seconds`` by route template (``/v1/users/{user_id}/recommendations``,
never the raw path, so ids cannot blow up the label space), method and status;
``model_info`` (the served version, value 1), ``model_loaded_timestamp_seconds``,
``model_reloads_total`` by result; ``recommendations_total`` by endpoint and source;
``foldins_total`` and ``foldin_duration_seconds``; ``fallbacks_total`` by reason;
``erasures_total``;
``events_accepted_total``, ``events_duplicate_total``, ``events_rejected_total``;
``event_commit_events`` and ``event_commit_duration_seconds`` (the group commit);
``fresh_users``; ``impressions_total`` by version and source (recorded durably);
``experiment_info`` (the running experiment's arms and the versions they serve, value 1); and,
refreshed every ``[experiments] metrics_refresh_seconds`` over the last
``metrics_window_hours`` (:mod:`recforge.serving.online_export`), ``online_impressions``,
``online_ctr`` and ``online_conversion_rate`` by version and source, and
``experiment_users`` and ``experiment_rate`` (by metric ``click`` or ``convert``) by arm,
``experiment_p_value`` by metric; and the process's own health, sampled by :class:`ProcessProbe`:
``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ``open_connections`` (HTTP
clients connected to this process) and ``event_loop_lag_seconds`` (how late the event loop
ran a timer: the time every request on the loop waited behind other work).

Each app has its own registry, so several apps (tests) never clash. With several worker
processes, set ``PROMETHEUS_MULTIPROC_DIR`` (``recforge serve --workers N`` does): every
process writes its values there and ``/metrics`` adds them up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from recforge.online.impressions import Impression

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsMiddleware", "ProcessProbe", "open_connections"]

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
            "Popular-list answers by reason: unknown_user, unknown_item, no_list, store_unavailable, erased.",
            ["reason"],
            registry=registry,
        )
        self.erasures = Counter(
            "recforge_erasures", "Deletions of a user's events acknowledged.", registry=registry
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
        self.cpu_seconds = Counter(
            "recforge_process_cpu_seconds",
            "CPU time (user + system) of the API processes, in seconds.",
            registry=registry,
        )
        self.resident_memory = Gauge(
            "recforge_process_resident_memory_bytes",
            "Resident memory of the API process, in bytes.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.connections = Gauge(
            "recforge_open_connections",
            "TCP connections of HTTP clients open to the API process.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.loop_lag = Histogram(
            "recforge_event_loop_lag_seconds",
            "How late the event loop woke a periodic timer, in seconds.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.impressions = Counter(
            "recforge_impressions",
            "Answers recorded as impressions (written to the home), by model version and source.",
            ["version", "source"],
            registry=registry,
        )
        self.experiment_info = Gauge(
            "recforge_experiment_info",
            "The running experiment: each arm and the version it serves (value 1).",
            ["experiment", "arm", "version"],
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.online_impressions = Gauge(
            "recforge_online_impressions",
            "Impressions over the online-metrics window, by model version and source.",
            ["version", "source"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.online_ctr = Gauge(
            "recforge_online_ctr",
            "Share of impressions with an attributed event, by model version and source.",
            ["version", "source"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.online_conversion_rate = Gauge(
            "recforge_online_conversion_rate",
            "Share of impressions with an attributed conversion, by model version and source.",
            ["version", "source"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.experiment_users = Gauge(
            "recforge_experiment_users",
            "Users shown an answer of the running experiment's arm.",
            ["experiment", "arm"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.experiment_rate = Gauge(
            "recforge_experiment_rate",
            "Share of an arm's users with an attributed event (click) or conversion (convert).",
            ["experiment", "arm", "metric"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.experiment_p_value = Gauge(
            "recforge_experiment_p_value",
            "Two-sided p-value of the two-proportion test between the arms, by metric.",
            ["experiment", "metric"],
            registry=registry,
            multiprocess_mode="livemostrecent",
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

    def impressions_written(self, rows: Sequence[Impression]) -> None:
        """Count a batch of impressions written (in Python: an Arrow ``group_by`` would wake
        Arrow's thread pool beside the event loop at every flush)."""
        counts = collections.Counter((row.version, row.source) for row in rows)
        for (version, source), count in counts.items():
            self.impressions.labels(version, source).inc(count)

    def routing_now(self, arms: list[tuple[str, str, str]]) -> None:
        """The running experiment's ``(experiment, arm, version)`` triples (none: no experiment)."""
        self.experiment_info.clear()
        for labels in arms:
            self.experiment_info.labels(*labels).set(1)

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
            # the template without converters: /v1/users/{user_id}/recommendations
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(
                template, scope.get("method", ""), status, time.perf_counter() - started
            )


class ProcessProbe:
    """Samples the process for :class:`Metrics` from the event loop it watches: every
    ``lag_interval`` seconds a timer measures how late the loop woke it (``event_loop_lag``);
    every ``interval`` seconds CPU time, resident memory and open client connections are read
    (from ``/proc``, in a worker thread; where there is no ``/proc`` only CPU time is)."""

    def __init__(self, metrics: Metrics, interval: float = 5.0, lag_interval: float = 0.5) -> None:
        self.metrics = metrics
        self.interval = interval
        self.lag_interval = lag_interval
        self._tasks: list[asyncio.Task[None]] = []
        self._cpu = _cpu_seconds()

    def start(self) -> None:
        """Start both loops on the running event loop."""
        self._tasks = [asyncio.create_task(self._watch_lag()), asyncio.create_task(self._watch_process())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _watch_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.lag_interval)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - started - self.lag_interval))

    async def _watch_process(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.interval)

    def sample(self) -> None:
        """Read CPU time, resident memory and open connections now."""
        cpu = _cpu_seconds()
        self.metrics.cpu_seconds.inc(max(0.0, cpu - self._cpu))
        self._cpu = cpu
        memory = _resident_bytes()
        if memory is not None:
            self.metrics.resident_memory.set(memory)
        connections = open_connections()
        if connections is not None:
            self.metrics.connections.set(connections)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _resident_bytes() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def open_connections() -> int | None:
    """Established TCP connections of this process to a port it listens on (its HTTP clients;
    outgoing connections, to Redis say, are left out); ``None`` without ``/proc``."""
    try:
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        listening: set[str] = set()
        established: list[str] = []
        for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
            with contextlib.suppress(FileNotFoundError), open(table) as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) < 10 or fields[9] not in inodes:
                        continue
                    port = fields[1].rsplit(":", 1)[1]
                    if fields[3] == "0A":  # LISTEN
                        listening.add(port)
                    elif fields[3] == "01":  # ESTABLISHED
                        established.append(port)
    except OSError:
        return None
    return sum(port in listening for port in established)
