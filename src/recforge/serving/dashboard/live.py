"""The server's own numbers over time, for the Overview page: sampled from its Prometheus text.

A :class:`LiveMetrics` reads the counters it needs (from the mounted server's own registry, or
from the Prometheus text of another server's ``/metrics`` or a Kafka consumer's metrics port)
every ``interval`` seconds
from the dashboard's background thread and keeps the last hour of samples. A page then costs
no scrape: request rate, error rate and p50/p99 latency are differences between two samples
(latency quantiles interpolated inside the histogram's buckets, as Prometheus'
``histogram_quantile`` does).

Only the API's own routes (``/v1/...``) count as requests here, not the dashboard's pages or
``/metrics``.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from recforge.serving.telemetry import Metrics

__all__ = ["LiveMetrics", "Sample", "Window", "fetch_url", "parse_sample", "registry_sample"]

log = logging.getLogger("recforge.dashboard")
_API = "/v1/"


@dataclass(frozen=True)
class Sample:
    """Cumulative counters at one time."""

    at: float
    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    events_accepted: float = 0.0
    events_rejected: float = 0.0
    foldins: float = 0.0
    fresh_users: float | None = None
    kafka_lag: float | None = None


@dataclass(frozen=True)
class Window:
    """Rates between two samples."""

    seconds: float
    request_rate: float
    error_rate: float
    p50: float | None
    p99: float | None
    events_rate: float
    foldin_rate: float


def parse_sample(text: str, at: float) -> Sample:
    """The counters the dashboard shows, from Prometheus text."""
    return collect_sample(text_string_to_metric_families(text), at)


def registry_sample(metrics: Metrics, at: float) -> Sample:
    """The counters the dashboard shows, read from a server's own :class:`Metrics`: only the
    six families it needs are collected, and no text is written or parsed (a full exposition
    costs tens of milliseconds of the GIL, which the API's event loop would wait for). With
    several worker processes the exposition is the only view of all of them, so it is read."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return parse_sample(metrics.render().decode(), at)
    wanted = (
        metrics.requests,
        metrics.latency,
        metrics.events_accepted,
        metrics.events_rejected,
        metrics.foldins,
        metrics.fresh_users,
    )
    return collect_sample((family for metric in wanted for family in metric.collect()), at)


def collect_sample(families: Iterable[Metric], at: float) -> Sample:
    """The counters the dashboard shows, from metric families (parsed or collected)."""
    requests = errors = accepted = rejected = foldins = 0.0
    fresh: float | None = None
    lag: float | None = None
    buckets: dict[float, float] = {}
    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "recforge_http_requests_total" and labels.get("route", "").startswith(_API):
                requests += value
                if labels.get("status", "").startswith("5"):
                    errors += value
            elif name == "recforge_http_request_duration_seconds_bucket" and labels.get(
                "route", ""
            ).startswith(_API):
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value
            elif name == "recforge_events_accepted_total":
                accepted += value
            elif name == "recforge_events_rejected_total":
                rejected += value
            elif name == "recforge_foldins_total":
                foldins += value
            elif name == "recforge_fresh_users":
                fresh = (fresh or 0.0) + value
            elif name == "recforge_kafka_consumer_lag":
                lag = (lag or 0.0) + value
    return Sample(at, requests, errors, buckets, accepted, rejected, foldins, fresh, lag)


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float | None:
    """``histogram_quantile(q)`` of the observations between two cumulative bucket snapshots."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            width = count - previous_count
            fraction = (rank - previous_count) / width if width > 0 else 1.0
            return previous_bound + (bound - previous_bound) * fraction
        previous_bound, previous_count = bound, count
    return None


def window(before: Sample, after: Sample) -> Window:
    seconds = max(after.at - before.at, 1e-9)
    requests = after.requests - before.requests
    return Window(
        seconds=seconds,
        request_rate=requests / seconds,
        error_rate=(after.errors - before.errors) / requests if requests > 0 else 0.0,
        p50=quantile(0.5, before.buckets, after.buckets),
        p99=quantile(0.99, before.buckets, after.buckets),
        events_rate=(after.events_accepted - before.events_accepted) / seconds,
        foldin_rate=(after.foldins - before.foldins) / seconds,
    )


def fetch_url(url: str, timeout: float = 0.5) -> Callable[[float], Sample]:
    """A source that GETs Prometheus text from ``url`` and reads it."""

    def fetch(at: float) -> Sample:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return parse_sample(answer.read().decode("utf-8"), at)

    return fetch


class LiveMetrics:
    """Samples of one source over the last ``keep_seconds`` (see the module docstring)."""

    def __init__(
        self, source: Callable[[float], Sample], name: str, keep_seconds: float = 3600, interval: float = 5.0
    ) -> None:
        self.source = source
        self.name = name
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=max(2, int(keep_seconds / interval) + 1))
        self.error: str | None = None
        self._lock = threading.Lock()

    def sample(self) -> None:
        """Take one sample now (from the background thread)."""
        try:
            taken = self.source(time.time())
        except Exception as error:  # a source down is shown on the page, not raised
            self.error = f"{type(error).__name__}: {error}"
            return
        self.error = None
        with self._lock:
            self.samples.append(taken)

    def latest(self) -> Sample | None:
        with self._lock:
            return self.samples[-1] if self.samples else None

    def recent(self, seconds: float = 60.0) -> Window | None:
        """Rates over about the last ``seconds`` (between the newest sample and the one nearest
        ``seconds`` before it); ``None`` with fewer than two samples."""
        with self._lock:
            samples = list(self.samples)
        if len(samples) < 2:
            return None
        newest, base = samples[-1], samples[0]
        for s in reversed(samples[:-1]):
            if newest.at - s.at >= seconds:
                base = s
                break
        return window(base, newest)

    def series(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Requests/s and p99 latency (ms) between successive samples, for charts."""
        with self._lock:
            samples = list(self.samples)
        if len(samples) < 2:
            return {}
        windows = [window(a, b) for a, b in itertools.pairwise(samples)]
        at = np.array([s.at for s in samples[1:]])
        rate = np.array([w.request_rate for w in windows])
        p99 = np.array([np.nan if w.p99 is None else w.p99 * 1e3 for w in windows])
        return {"requests/s": (at, rate), "p99 ms": (at, p99)}
