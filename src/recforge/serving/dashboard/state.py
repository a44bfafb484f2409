"""What the dashboard knows and how it keeps it fresh: :class:`Dashboard`.

One object per app. It holds the event digest (:mod:`.digest`), the server's sampled metrics
(:mod:`.live`), a Kafka consumer's metrics when ``[kafka] metrics_port`` names one, and the
tuning studies read once per change of their file; two background threads keep them current
(metrics every ``interval`` seconds; the digest and the studies every ``refresh_seconds``), so
a page only reads what is already in memory or a few row groups on disk. The served model
comes from the server that mounts the dashboard (or from a holder of its own under ``recforge
dashboard``). The server passes ``on_first_refresh`` to move what the first refresh loaded into
the permanent GC generation, as it does with everything alive at start-up: a full collection
would otherwise walk those objects, a pause of every request in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recforge.artifacts import ModelRegistry
from recforge.catalog import CatalogStore
from recforge.config import Config
from recforge.serving.dashboard.digest import EventDigest
from recforge.serving.dashboard.live import LiveMetrics, Sample, fetch_url
from recforge.serving.fresh import FreshEvent
from recforge.serving.model import ServedModel
from recforge.serving.security import ApiKeys

__all__ = ["Dashboard", "Study"]

log = logging.getLogger("recforge.dashboard")


@dataclass(frozen=True)
class Study:
    """One tuning study as the Tuning page shows it."""

    name: str
    path: Path
    model: str
    metric: str
    k: int | None
    direction: str
    trials: list[dict[str, Any]]
    best: int | None
    log_scale: dict[str, bool]
    error: str | None = None


class Dashboard:
    """The dashboard's state over one home (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        served: Callable[[], ServedModel | None],
        *,
        fresh: Callable[[str, int], list[FreshEvent]] | None = None,
        metrics_source: Callable[[float], Sample] | None = None,
        metrics_name: str = "this server",
        interval: float = 5.0,
        refresh_seconds: float = 30.0,
        on_first_refresh: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.home = Path(config.home)
        self.served = served
        self.fresh = fresh
        self.admin_keys = ApiKeys(config.serving.admin_keys)
        self.catalog = CatalogStore(self.home)
        self.read_keys = ApiKeys(config.serving.api_keys)
        self.registry = ModelRegistry(self.home)
        self.digest = EventDigest(self.home)
        self.live = LiveMetrics(metrics_source, metrics_name, interval=interval) if metrics_source else None
        kafka = config.kafka
        self.kafka = (
            LiveMetrics(fetch_url(f"http://{kafka.metrics_host}:{kafka.metrics_port}/metrics"), "kafka")
            if kafka.metrics_port
            else None
        )
        self.interval = interval
        self.refresh_seconds = refresh_seconds
        self.on_first_refresh = on_first_refresh
        self.studies: dict[str, Study] = {}
        self._study_stamps: dict[str, tuple[int, int]] = {}
        self.started = time.time()
        self.refreshed: float | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    # background ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the sampler and the refresher threads."""
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._sampler, name="recforge-dashboard-metrics", daemon=True),
            threading.Thread(target=self._refresher, name="recforge-dashboard-refresh", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []

    def refresh_now(self) -> None:
        """Ask the refresher to run now (e.g. after a publish), without waiting for it."""
        self._wake.set()

    def _sampler(self) -> None:
        while not self._stop.is_set():
            for live in (self.live, self.kafka):
                if live is not None:
                    live.sample()
            self._stop.wait(self.interval)

    def _refresher(self) -> None:
        first = True
        while not self._stop.is_set():
            self.refresh()
            if first and self.on_first_refresh is not None:
                self.on_first_refresh()
            first = False
            self._wake.wait(self.refresh_seconds)
            self._wake.clear()

    def refresh(self) -> None:
        """Bring the digest and the studies up to date (the refresher calls it)."""
        self.digest.refresh()
        self._refresh_studies()
        self.refreshed = time.time()

    # tuning studies -----------------------------------------------------------------------
    def _refresh_studies(self) -> None:
        folder = self.home / "tuning"
        found = sorted(folder.glob("*.db")) if folder.is_dir() else []
        names = {path.stem for path in found}
        for name in list(self.studies):
            if name not in names:
                del self.studies[name]
                self._study_stamps.pop(name, None)
        for path in found:
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            stamp = (stat.st_mtime_ns, stat.st_size)
            if self._study_stamps.get(path.stem) == stamp:
                continue
            self.studies[path.stem] = read_study(path)
            self._study_stamps[path.stem] = stamp


def read_study(path: Path) -> Study:
    """Every trial of the study stored in ``path`` (Optuna's SQLite file, one study each as
    ``recforge tune`` writes them), with the search space's scales and the chosen trial."""
    try:
        import optuna
    except ImportError:
        return Study(path.stem, path, "", "", None, "", [], None, {}, "Optuna is not installed")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = f"sqlite:///{path}"
        summaries = optuna.get_all_study_summaries(storage=storage)
        if not summaries:
            return Study(path.stem, path, "", "", None, "", [], None, {}, "no study in the file")
        study = optuna.load_study(study_name=summaries[0].study_name, storage=storage)
        setup = dict(study.user_attrs.get("setup") or {})
        direction = study.direction.name.lower()
        trials: list[dict[str, Any]] = []
        for trial in study.get_trials(deepcopy=False):
            complete = trial.state == optuna.trial.TrialState.COMPLETE
            trials.append(
                {
                    "number": trial.number,
                    "state": trial.state.name.lower(),
                    "value": trial.value if complete else None,
                    "params": dict(trial.params),
                    "scores": dict(trial.user_attrs.get("scores") or {}),
                    "seconds": trial.duration.total_seconds() if trial.duration is not None else None,
                }
            )
    except Exception as error:  # a study being written, or not Optuna's: shown, not raised
        return Study(path.stem, path, "", "", None, "", [], None, {}, f"{type(error).__name__}: {error}")
    done = [t for t in trials if t["value"] is not None]
    sign = -1.0 if direction == "minimize" else 1.0
    best = max(done, key=lambda t: (sign * t["value"], -t["number"]))["number"] if done else None
    space = setup.get("search_space") or {}
    log_scale = {name: str(text).endswith(" log") for name, text in space.items()}
    k = setup.get("k")
    return Study(
        path.stem,
        path,
        str(setup.get("model", "")),
        str(setup.get("metric", "value")),
        int(k) if k is not None else None,
        direction,
        trials,
        best,
        log_scale,
    )
