"""Event intake over HTTP: parse, validate, and store durably with a group commit.

``POST /v1/events`` takes a JSON array of events or NDJSON (one event per line). Parsing is
orjson; the records become Arrow columns in C where their fields are plainly typed
(:func:`columns_of`); validation is the vectorised
:func:`~recforge.data.validation.validate_table`. A request is answered only
after its accepted events are durable in the event store.

**Group commit.** One committer thread per process owns the event store's writer side. It
takes every request waiting in its queue (up to ``commit_max_events`` events), writes them as
one segment and makes it durable (one fsync of the file, one of the directory), then answers
all of them. While a commit is on disk, new requests queue up and form the next group, so the
number of fsyncs (and of segments) per second stays bounded however many requests arrive,
and a batch of one request costs what it would alone. Each request gets its own counts:
events already stored (or repeated earlier in the same group) are ``duplicates``.

After the commit and before answering, the committed events newer than the served model's
data go to the fresh-event store, so the client's next read already sees them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from recforge.config import Config
from recforge.data.quarantine import Quarantine
from recforge.data.schema import EVENT_SCHEMA
from recforge.data.store import EventStore
from recforge.data.validation import Rejection, records_to_table, validate_table
from recforge.serving.fresh import FreshEvents
from recforge.serving.telemetry import Metrics

__all__ = ["BadEvents", "Counts", "EventIntake", "columns_of", "parse_events"]

log = logging.getLogger("recforge.serving")


_ID_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer, pa.types.is_null)
_NUMBER_TYPES = (*_ID_TYPES, pa.types.is_floating)


def columns_of(records: list[Any]) -> pa.Table | None:
    """The records as Arrow columns built in C (one list comprehension and one ``pa.array``
    per field, no per-field Python branching), when every record is a JSON object whose ids and
    event types are strings or integers and whose value and timestamp are strings or numbers:
    the common case. ``None`` otherwise, and the caller lays the records out one by one
    (:func:`~recforge.data.validation.records_to_table`), which explains odd values. Validation
    reads both layouts the same way (numbers are parsed from text or taken as numbers alike)."""
    if not all(type(record) is dict for record in records):
        return None
    columns = {}
    for name in EVENT_SCHEMA.names:
        values = [record.get(name) for record in records]
        try:
            column = pa.array(values)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            return None
        allowed = _NUMBER_TYPES if name in ("value", "timestamp") else _ID_TYPES
        if not any(check(column.type) for check in allowed):
            return None
        if pa.types.is_floating(column.type) and any(type(v) is int for v in values):
            return None  # integers among floats: messages would show 5 as 5.0
        columns[name] = column
    return pa.table(columns)


class BadEvents(ValueError):
    """A request body that is not events at all (answered with ``status`` and the message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Counts:
    """What became of one request's valid events."""

    accepted: int
    duplicates: int


def parse_events(body: bytes, max_events: int) -> tuple[list[Any], dict[int, str]]:
    """The records of a JSON array or NDJSON body, and ``{index: reason}`` for NDJSON lines
    that are not JSON. Raises :class:`BadEvents` (400 for a broken JSON array, 413 for more
    than ``max_events`` events)."""
    stripped = body.lstrip()
    if not stripped:
        return [], {}
    if stripped[:1] == b"[":
        try:
            array = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise BadEvents(400, f"the body is not valid JSON: {error}") from None
        _check_count(len(array), max_events)
        return array, {}
    lines = [line for line in body.split(b"\n") if line.strip()]
    _check_count(len(lines), max_events)
    records: list[Any] = []
    broken: dict[int, str] = {}
    for index, line in enumerate(lines):
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as error:
            records.append(None)
            broken[index] = f"invalid JSON: {error}"
    return records, broken


def _check_count(count: int, max_events: int) -> None:
    if count > max_events:
        raise BadEvents(413, f"too many events in one request: {count} (at most {max_events})")


@dataclass
class _Pending:
    table: pa.Table
    rejections: list[Rejection]
    future: Future[Counts]


class EventIntake:
    """Validates request bodies and commits their events in groups (see the module docstring)."""

    def __init__(
        self,
        store: EventStore,
        config: Config,
        fresh: FreshEvents,
        cutoff_us: Callable[[], int],
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.weighting = config.weighting.value()
        self.fresh = fresh
        self.cutoff_us = cutoff_us
        self.metrics = metrics
        self.max_group = config.serving.commit_max_events
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # request side ------------------------------------------------------------------------
    def prepare(self, body: bytes) -> tuple[pa.Table, list[Rejection]]:
        """Parse and validate a body: the valid events and the rejections (``index``: the
        event's position in the request)."""
        records, broken = parse_events(body, self.config.serving.max_events_per_request)
        if not records:
            raise BadEvents(422, "the body holds no events: send a JSON array of events, or NDJSON")
        fast = None if broken else columns_of(records)
        extra: dict[int, list[str]] = {}
        not_objects: list[int] = []
        if fast is not None:
            table = fast
        else:
            table, extra, not_objects = records_to_table(records)
        malformed = dict.fromkeys(not_objects, "not a JSON object")
        malformed.update(broken)
        good, rejections = validate_table(
            table,
            self.config.data,
            source="http",
            locations={"index": np.arange(len(records))},
            raw=lambda rows: [records[int(r)] for r in rows],
            extra=extra,
            malformed=malformed,
        )
        return good, rejections

    def submit(self, table: pa.Table, rejections: list[Rejection]) -> Future[Counts]:
        """Queue valid events for the next group commit; the future resolves once they are
        durable (or fails with the store's error)."""
        future: Future[Counts] = Future()
        if self.metrics is not None and rejections:
            self.metrics.events_rejected.inc(len(rejections))
        if not table.num_rows and not rejections:
            future.set_result(Counts(0, 0))
            return future
        if self._thread is None:
            raise RuntimeError("the event intake is not running")
        self._queue.put(_Pending(table, rejections, future))
        return future

    # committer side ----------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="recforge-commit", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, then stop."""
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join(timeout=60)
                self._thread = None

    def _run(self) -> None:
        try:  # build the dedupe index now rather than in the first request's commit
            started = time.perf_counter()
            self.store.stored_keys(self.store.segments())
            log.info("event key index ready in %.1f s", time.perf_counter() - started)
        except Exception as error:  # the first commit builds it again (and reports failures)
            log.warning("could not read the event store's keys ahead: %s", error)
        running = True
        while running:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            rows = first.table.num_rows
            while rows < self.max_group:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    running = False
                    break
                group.append(more)
                rows += more.table.num_rows
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        started = time.perf_counter()
        counts: list[Counts | BaseException] = []
        committed: list[pa.Table] = []
        try:
            rejections = [r for pending in group for r in pending.rejections]
            if rejections:
                with Quarantine(self.store.home, "http") as quarantine:
                    quarantine.write(rejections)
            with self.store.writer() as writer:
                for pending in group:
                    if not pending.table.num_rows:
                        counts.append(Counts(0, 0))
                        continue
                    try:
                        accepted, duplicates = writer.write(pending.table)
                    except (ValueError, pa.ArrowException) as error:  # this request only
                        counts.append(error)
                        continue
                    counts.append(Counts(accepted, duplicates))
                    committed.append(pending.table)
                writer.commit()
        except BaseException as error:  # the store failed: every request of the group fails
            log.error("event commit failed: %s", error)
            for pending in group:
                pending.future.set_exception(error)
            return
        self._after_commit(group, counts, committed, time.perf_counter() - started)

    def _after_commit(
        self,
        group: list[_Pending],
        counts: list[Counts | BaseException],
        committed: list[pa.Table],
        seconds: float,
    ) -> None:
        stored = sum(c.accepted for c in counts if isinstance(c, Counts))
        duplicates = sum(c.duplicates for c in counts if isinstance(c, Counts))
        if self.metrics is not None:
            self.metrics.events_accepted.inc(stored)
            self.metrics.events_duplicate.inc(duplicates)
            self.metrics.commit_events.observe(stored)
            self.metrics.commit_latency.observe(seconds)
        if committed:
            try:
                self.fresh.add(pa.concat_tables(committed), self.weighting, self.cutoff_us())
            except Exception as error:  # durable already; fresh events are a best effort
                log.error("could not keep fresh events: %s", error)
            if self.metrics is not None:
                users = self.fresh.users()
                if users is not None:
                    self.metrics.fresh_users.set(users)
        for pending, result in zip(group, counts, strict=True):
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)
