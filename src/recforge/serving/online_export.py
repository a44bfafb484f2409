"""Online metrics on ``/metrics``: a background thread that recomputes them now and then.

Every ``[experiments] metrics_refresh_seconds`` the thread computes the online report over the
last ``metrics_window_hours`` (:func:`recforge.online.rates.online_report`: impressions, CTR and
conversion rate per model version and source) and, while an experiment runs, its report
(:func:`recforge.online.experiments.experiment_report`: users and rates per arm, p-values), and
sets the gauges of :class:`~recforge.serving.telemetry.Metrics` from them. It reads the stores
like any reader (DuckDB, Arrow), off the request path; a failure is logged and the gauges keep
their last values.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from recforge.config import Config
from recforge.online.experiments import ARMS, ExperimentBook, experiment_report
from recforge.online.rates import online_report
from recforge.serving.telemetry import Metrics

__all__ = ["OnlineExport"]

log = logging.getLogger("recforge.serving")


class OnlineExport:
    """The thread that keeps the online gauges of ``metrics`` up to date."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.seconds = config.experiments.metrics_refresh_seconds
        self.last_duration: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None or self.seconds <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="recforge-online-export", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.refresh()
            except Exception:  # the gauges keep their last values
                log.exception("could not refresh the online metrics")

    def refresh(self) -> None:
        """Recompute the reports and set the gauges."""
        started = time.perf_counter()
        settings = self.config.experiments
        report = online_report(self.config.home, self.config, timedelta(hours=settings.metrics_window_hours))
        self._set_online(report)
        running = ExperimentBook(self.config.home).running()
        self._set_experiment(
            None if running is None else experiment_report(self.config.home, self.config, running.name)
        )
        self.last_duration = time.perf_counter() - started

    def _set_online(self, report: dict[str, Any]) -> None:
        metrics = self.metrics
        for gauge in (metrics.online_impressions, metrics.online_ctr, metrics.online_conversion_rate):
            gauge.clear()
        for group in report["groups"]:
            labels = (group["version"], group["source"])
            metrics.online_impressions.labels(*labels).set(group["impressions"])
            metrics.online_ctr.labels(*labels).set(group["ctr"] or 0.0)
            metrics.online_conversion_rate.labels(*labels).set(group["conversion_rate"] or 0.0)

    def _set_experiment(self, report: dict[str, Any] | None) -> None:
        metrics = self.metrics
        for gauge in (metrics.experiment_users, metrics.experiment_rate, metrics.experiment_p_value):
            gauge.clear()
        if report is None:
            return
        name = report["experiment"]["name"]
        for arm in ARMS:
            numbers = report["arms"][arm]
            metrics.experiment_users.labels(name, arm).set(numbers["users"])
            for metric in ("click", "convert"):
                rate = numbers[f"{metric}_rate"]
                metrics.experiment_rate.labels(name, arm, metric).set(rate if rate is not None else 0.0)
        for metric, comparison in report["comparisons"].items():
            if comparison["p_value"] is not None:
                metrics.experiment_p_value.labels(name, metric).set(comparison["p_value"])
