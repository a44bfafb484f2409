"""The schedule loop: a pipeline run every interval, until told to stop.

* Runs start ``every`` seconds apart (start to start); one that outlasts the interval is
  followed at once by the next, never overlapped: runs execute one after another in this
  process, and across processes the pipeline lock makes a run that finds another in progress
  skip its turn (counted as ``skipped``).
* A run that fails is logged and counted, and the next one happens as scheduled.
* :meth:`Scheduler.stop` (the command wires SIGTERM and SIGINT to it) ends the loop: at once
  when it is waiting, after the current stage when a run is in progress (that run is left
  ``open`` and resumable; what its finished stages wrote stays valid).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recforge.config import Config
from recforge.pipeline.engine import Engine
from recforge.pipeline.lock import PipelineBusy
from recforge.pipeline.runner import RunResult, run_pipeline

__all__ = ["ScheduleSummary", "Scheduler"]

log = logging.getLogger("recforge.pipeline")


@dataclass
class ScheduleSummary:
    """Counts of the ticks: ``runs`` attempted, and by how they ended."""

    counts: Counter[str] = field(default_factory=Counter)

    @property
    def runs(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, **{key: self.counts[key] for key in sorted(self.counts)}}

    def line(self) -> str:
        parts = ", ".join(f"{self.counts[key]} {key}" for key in sorted(self.counts))
        return f"{self.runs} runs" + (f" ({parts})" if parts else "")


class Scheduler:
    """Runs :func:`~recforge.pipeline.runner.run_pipeline` every ``every`` seconds, on ``engine``
    (default: this machine; one engine, e.g. one Spark session, serves every run)."""

    def __init__(
        self,
        home: str | Path,
        config: Config,
        every: float,
        *,
        model: str | None = None,
        engine: Engine | None = None,
        max_runs: int | None = None,
        on_result: Callable[[str, RunResult | None, BaseException | None], None] | None = None,
    ) -> None:
        if not every > 0:
            raise ValueError(f"the interval must be positive, got {every}")
        self.home = Path(home)
        self.config = config
        self.every = float(every)
        self.model = model
        self.engine = engine
        self.max_runs = max_runs
        self.on_result = on_result
        self.summary = ScheduleSummary()
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the loop to end (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> ScheduleSummary:
        """Loop until :meth:`stop` (or ``max_runs`` ticks); returns the counts."""
        next_start = time.monotonic()
        while not self._stop.is_set():
            delay = next_start - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            started = time.monotonic()
            self._tick()
            if self.max_runs is not None and self.summary.runs >= self.max_runs:
                break
            next_start = max(started + self.every, time.monotonic())
        log.info("scheduler: stopped after %s", self.summary.line())
        return self.summary

    def _tick(self) -> None:
        try:
            result = run_pipeline(
                self.home, self.config, model=self.model, engine=self.engine, should_stop=self._stop.is_set
            )
        except PipelineBusy as busy:
            self.summary.counts["skipped"] += 1
            log.info("scheduler: skipped a run: %s", busy)
            self._report("skipped", None, busy)
        except Exception as error:  # a failing run is counted and the loop goes on
            self.summary.counts["failed"] += 1
            message = " ".join(str(error).split()) or type(error).__name__
            log.error("scheduler: run failed: %s", message)
            log.debug("scheduler: the failure's traceback", exc_info=True)
            self._report("failed", None, error)
        else:
            kind = "stopped" if result.stopped else (result.outcome or result.status)
            self.summary.counts[kind] += 1
            log.info("scheduler: %s", result.summary())
            self._report(kind, result, None)

    def _report(self, kind: str, result: RunResult | None, error: BaseException | None) -> None:
        if self.on_result is not None:
            self.on_result(kind, result, error)
