"""A line on the terminal while Spark works and nothing else has said anything.

Some of a stage's Spark jobs run for many seconds without a natural point to report (reading
the segments, the vocabularies, building the blocks); on a loaded machine or a big cluster that
is a silent terminal. :class:`Heartbeat` watches recforge's log: after ``every`` seconds without
a line from any ``recforge`` logger it logs (``recforge.spark``) what Spark is doing, from the
context's status tracker (or that no stage runs: the driver is working)::

    spark: 6 s since the last line; stage 12 (toArrow at holdout.py:243): 1/2 tasks done

so a user sees a line at least every ``every`` seconds (plus the time the status call takes).
Before there is a context to ask (the JVM starting, executors registering), :func:`waiting`
says how long it has been.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark import SparkContext

__all__ = ["Heartbeat", "heartbeat", "waiting"]

log = logging.getLogger("recforge.spark")

#: ``"<call> at /long/path/to/file.py:123"`` -> ``"<call> at file.py:123"``
_CALL_SITE = re.compile(r" at \S*/")


class _LastLine(logging.Handler):
    """Remembers when a ``recforge`` logger last emitted a record."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        self.at = time.monotonic()


class Heartbeat:
    """See the module doc; :meth:`beat` is one check, the thread of :func:`heartbeat` calls it."""

    def __init__(self, sc: SparkContext, every: float = 5.0) -> None:
        self.sc = sc
        self.every = every
        self.last = _LastLine()
        #: when a Spark stage was last seen running (opening counts as one)
        self.active_at = time.monotonic()

    def beat(self) -> str | None:
        """The line to log now, if ``every`` seconds passed since the last one: the active Spark
        stage with most tasks left, or, within ``2 * every`` seconds of the last one seen, that the
        driver is working (the driver's own part of a stage; later, nothing: an idle process,
        such as a scheduler between runs, stays quiet)."""
        now = time.monotonic()
        tracker = self.sc.statusTracker()
        stages = [s for s in (tracker.getStageInfo(i) for i in tracker.getActiveStageIds()) if s is not None]
        if stages:
            self.active_at = now
        silent = now - self.last.at
        if silent < self.every:
            return None
        if not stages:
            if now - self.active_at > 2 * self.every:
                return None
            return (
                f"spark: {silent:.0f} s since the last line; the driver is working (no Spark stage running)"
            )
        stage = max(stages, key=lambda s: (s.numTasks - s.numCompletedTasks, s.stageId))
        return (
            f"spark: {silent:.0f} s since the last line; stage {stage.stageId} "
            f"({_CALL_SITE.sub(' at ', stage.name)}): {stage.numCompletedTasks}/{stage.numTasks} tasks done"
        )


@contextlib.contextmanager
def heartbeat(sc: SparkContext, every: float = 5.0) -> Iterator[Heartbeat]:
    """A :class:`Heartbeat` beating in a daemon thread for the duration of the context."""
    beat = Heartbeat(sc, every)
    root = logging.getLogger("recforge")
    root.addHandler(beat.last)
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(min(1.0, every / 2)):
            with contextlib.suppress(Exception):  # a context stopping under us: nothing to say
                line = beat.beat()
                if line is not None:
                    log.info("%s", line)

    thread = threading.Thread(target=run, name="recforge-spark-heartbeat", daemon=True)
    thread.start()
    try:
        yield beat
    finally:
        stop.set()
        thread.join(timeout=5)
        root.removeHandler(beat.last)


@contextlib.contextmanager
def waiting(what: str, every: float = 5.0) -> Iterator[None]:
    """Log ``spark: still <what> (N s)`` every ``every`` seconds until the context exits."""
    stop = threading.Event()
    started = time.monotonic()

    def run() -> None:
        while not stop.wait(every):
            log.info("spark: still %s (%.0f s)", what, time.monotonic() - started)

    thread = threading.Thread(target=run, name="recforge-spark-waiting", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
