"""Kafka ingestion: a consumer-group member that moves JSON events from a topic into the store.

Each message is one event: a JSON object with the fields of the event schema
(:mod:`recforge.data.schema`; other fields and the message key are ignored). Messages are taken
in batches (``[kafka] batch_events`` messages, or what arrived within ``max_batch_wait_s``), and
each batch is

1. parsed in bulk: Arrow's JSON reader over the payloads joined by newlines (only messages that
   do not plainly hold one object on one line are parsed alone, with orjson, to find the bad
   ones; see :func:`parse_messages`);
2. validated as files are (:func:`~recforge.data.validation.validate_table`); bad messages go to
   the quarantine (``<home>/quarantine/kafka-<topic>.<time>.jsonl``) with their ``partition``
   and ``offset``, flushed and fsync'd;
3. stored as one segment (:meth:`~recforge.data.store.EventStore.append`: durable on return,
   dropping event ids already stored);
4. and only then are its offsets committed, synchronously: per partition, one past the last
   offset of the batch.

**At least once in, exactly once stored.** A consumer killed between 3 and 4 leaves stored events
whose offsets are not committed. The member that takes its partitions over (after the dead one's
session times out, ``session_timeout_ms``) reads them again, and the store drops them as
duplicates by ``event_id`` (an event without one gets an id derived from its content), so the
store ends with each valid event once however often consumers die. Rejected messages read again
this way are quarantined again, under the same partition and offset.

**Stopping.** On SIGTERM or SIGINT (:func:`ingest_kafka`) the batch in hand is stored and
committed, the consumer leaves its group and the report is returned. ``max_idle`` stops after
that many seconds without a message, counted from the partition assignment (joining a group can
take tens of seconds) and from every message since.

**An unreachable broker** is found before anything else: the consumer asks for the topic's
metadata and gives up after ``[kafka] connect_timeout_s`` (or ``max_idle``, when shorter) with one
error naming the address. librdkafka's own log lines (one per reconnection attempt) are held back
meanwhile, and later each kind is passed on at most once a minute.

**Lag**, per partition: the high watermark from the latest fetch minus the next offset to store,
i.e. messages on the broker not yet durable here. In the report, and, with ``metrics_port``, as
the Prometheus gauge ``recforge_kafka_consumer_lag{topic,partition}`` beside counters of
messages, events by outcome and batches.

A new group starts from the earliest offset.

**Other destinations.** What a batch becomes is a :class:`KafkaSink`'s business: events go to the
event store (:class:`EventSink`; ``on_stored`` is then called with each batch's valid events once
they are durable, e.g. to feed serving's fresh-event store); catalog items go to the catalog store
(:mod:`recforge.catalog.kafka`), which keeps the offsets with the items and says where to start
(:meth:`KafkaSink.positions`), so a batch is applied exactly once.
"""

from __future__ import annotations

import io
import logging
import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pjson

from recforge._progress import Progress, progress
from recforge.config import Config
from recforge.data.quarantine import Quarantine
from recforge.data.store import EventStore
from recforge.data.validation import records_to_table, validate_table
from recforge.errors import RecforgeError

__all__ = [
    "EventSink",
    "KafkaIngestor",
    "KafkaReport",
    "KafkaSink",
    "ParsedMessages",
    "SinkResult",
    "ingest_kafka",
    "parse_messages",
    "run_ingestors",
]

log = logging.getLogger("recforge.kafka")

#: Longest wait in one ``consume`` call: how soon a stop request or a due batch is noticed.
_POLL_S = 0.5
#: Most messages asked of one ``consume`` call.
_CONSUME_MAX = 100_000
#: The logger librdkafka's lines go to, and how often one kind of line is passed on.
CLIENT_LOGGER = "recforge.kafka.client"
_CLIENT_LOG_EVERY_S = 60.0


# parsing -------------------------------------------------------------------------------------
@dataclass
class ParsedMessages:
    """A batch of payloads as a table: row ``r`` holds message ``messages[r]``; ``malformed`` rows
    (all null) are rejected with that reason alone, ``extra`` adds reasons to others."""

    table: pa.Table
    messages: np.ndarray
    malformed: dict[int, str] = field(default_factory=dict)
    extra: dict[int, list[str]] = field(default_factory=dict)


def parse_messages(values: Sequence[bytes | None]) -> ParsedMessages:
    """Parse JSON payloads, one event per message.

    Payloads that plainly hold one object on one line (``{`` first, ``}`` last, no line break)
    are joined by newlines and read by Arrow's JSON reader in one call. The others, and all of
    them when Arrow refuses that read (a subtly broken message, a field whose JSON type varies,
    invalid UTF-8, which Arrow does not check), are parsed one by one with orjson: invalid JSON,
    not an object, or empty is malformed; the good ones, re-serialised on one line, are read in
    bulk again, or, when Arrow still refuses their mix of types, converted by
    :func:`~recforge.data.validation.records_to_table`.
    """
    n = len(values)
    texts = [v or b"" for v in values]
    checked = _check(texts, _suspects(texts))
    table = _read_json_lines(checked.lines(texts))
    extra: dict[int, list[str]] = {}
    if table is None:
        checked = _check(texts, range(n))
        table = _read_json_lines(checked.lines(texts))
        if table is None:
            table, extra, _ = records_to_table(checked.records)
    bad = list(checked.bad)
    if bad:
        nulls = pa.table({f.name: pa.nulls(len(bad), f.type) for f in table.schema})
        table = pa.concat_tables([table, nulls])
    good = len(checked.good)
    return ParsedMessages(
        table,
        np.array(checked.good + bad, dtype=np.int64),
        {good + j: checked.bad[index] for j, index in enumerate(bad)},
        extra,
    )


def _suspects(texts: list[bytes]) -> np.ndarray:
    """Indices of payloads that are not plainly one JSON object on one line: empty, not ``{`` first
    and ``}`` last (whitespace included), or holding a line break. Vectorised over the batch."""
    n = len(texts)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    blob = b"\n".join(texts)
    data = np.frombuffer(blob, dtype=np.uint8)
    ends = np.cumsum(lengths + 1) - 1  # where each payload's separator (or the end) is
    plain = lengths > 0
    rows = np.flatnonzero(plain)
    plain[rows] = (data[ends[rows] - lengths[rows]] == ord("{")) & (data[ends[rows] - 1] == ord("}"))
    if blob.count(b"\n") != n - 1:
        breaks = np.flatnonzero(data == ord("\n"))
        inner = breaks[~np.isin(breaks, ends)]
        plain[np.searchsorted(ends, inner)] = False
    return np.flatnonzero(~plain)


@dataclass
class _Checked:
    """Messages sorted into ``good`` (indices, in order) and ``bad`` (index: reason); ``normal``
    holds one-line re-serialisations of good messages that were checked; ``records`` the parsed
    good messages when every message was checked."""

    good: list[int]
    bad: dict[int, str]
    normal: dict[int, bytes]
    records: list[dict[str, Any]]

    def lines(self, texts: list[bytes]) -> list[bytes]:
        if not self.bad and not self.normal:
            return texts
        return [self.normal.get(i, texts[i]) for i in self.good]


def _check(texts: list[bytes], indices: Iterable[int]) -> _Checked:
    """Parse ``texts[i]`` for ``i`` in ``indices`` with orjson; the other messages count as good."""
    import orjson

    bad: dict[int, str] = {}
    normal: dict[int, bytes] = {}
    records: list[dict[str, Any]] = []
    for i in map(int, indices):
        text = texts[i]
        if not text.strip():
            bad[i] = "empty message"
            continue
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            bad[i] = f"invalid JSON: {error}"
            continue
        if not isinstance(record, dict):
            bad[i] = "not a JSON object"
            continue
        normal[i] = orjson.dumps(record)
        records.append(record)
    good = [i for i in range(len(texts)) if i not in bad] if bad else list(range(len(texts)))
    return _Checked(good, bad, normal, records)


def _read_json_lines(lines: list[bytes]) -> pa.Table | None:
    """``lines`` (each one non-blank line) joined and read by Arrow, one row per line; ``None``
    when Arrow refuses them, the whole is not UTF-8, or the rows do not match the lines."""
    if not lines:
        return records_to_table([])[0]  # the event columns, no rows
    blob = b"\n".join(lines)
    try:
        blob.decode("utf-8")
    except UnicodeDecodeError:
        return None
    options = pjson.ReadOptions(use_threads=True, block_size=max(1 << 20, min(len(blob) + 1, 1 << 24)))
    try:
        table = pjson.read_json(io.BytesIO(blob), read_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # No line is blank, so each gave at least one row or an error: n rows is one per line.
    return table if table.num_rows == len(lines) else None


# sinks -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SinkResult:
    """What a sink did with a batch: ``accepted`` stored, ``duplicates`` already there,
    ``rejected`` quarantined; ``segments`` written (event store); seconds per stage."""

    accepted: int
    duplicates: int
    rejected: int
    segments: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class KafkaSink:
    """Where a batch of messages goes. :meth:`write` must make what it keeps durable before it
    returns (offsets are committed after it) and quarantine the bad messages."""

    #: the home whose quarantine takes the bad messages
    home: Path

    def write(
        self,
        values: Sequence[bytes | None],
        partitions: np.ndarray,
        offsets: np.ndarray,
        quarantine: Quarantine,
        source: str,
        config: Config,
    ) -> SinkResult:
        raise NotImplementedError

    def positions(self, topic: str) -> dict[int, int]:
        """Where to read each partition from, when the sink keeps its own offsets (else none)."""
        return {}


class EventSink(KafkaSink):
    """Events into the event store (dedupe by event id), then ``on_stored`` with the valid ones."""

    def __init__(self, store: EventStore, on_stored: Callable[[pa.Table], None] | None = None) -> None:
        self.store = store
        self.home = store.home
        self.on_stored = on_stored

    def write(
        self,
        values: Sequence[bytes | None],
        partitions: np.ndarray,
        offsets: np.ndarray,
        quarantine: Quarantine,
        source: str,
        config: Config,
    ) -> SinkResult:
        clock = time.perf_counter()
        parsed = parse_messages(values)
        parsed_at = time.perf_counter()
        rows = parsed.messages
        good, rejections = validate_table(
            parsed.table,
            config.data,
            source=source,
            locations={"partition": partitions[rows], "offset": offsets[rows]},
            raw=lambda picked: [_text(values[int(rows[r])]) for r in picked],
            extra=parsed.extra,
            malformed=parsed.malformed,
        )
        quarantine.write(rejections)
        quarantine.flush()
        validated_at = time.perf_counter()
        result = self.store.append(good)
        if self.on_stored is not None and good.num_rows:
            try:
                self.on_stored(good)
            except Exception as error:  # durable already: the hook is a best effort
                log.error("kafka: could not pass stored events on: %s", error)
        timings = {
            "parse": parsed_at - clock,
            "validate": validated_at - parsed_at,
            "store": time.perf_counter() - validated_at,
        }
        segments = int(result.segment is not None)
        return SinkResult(result.accepted, result.duplicates, len(rejections), segments, timings)


# the report ----------------------------------------------------------------------------------
@dataclass
class KafkaReport:
    """What one run of :class:`KafkaIngestor` did.

    ``accepted`` events were stored; ``duplicates`` were dropped (already stored, e.g. read
    again after a crash, or repeated); ``rejected`` messages were quarantined. ``joined_s``: seconds
    from the start to the first partition assignment; ``active_s``: from the first message to
    the last commit; ``stopped``: ``"idle"`` or ``"signal"``. ``lag`` per partition at the end
    (messages on the broker not stored). ``timings``: seconds spent per stage.
    """

    topic: str
    group: str
    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    segments: int = 0
    commit_failures: int = 0
    seconds: float = 0.0
    joined_s: float | None = None
    active_s: float = 0.0
    stopped: str = ""
    lag: dict[int, int] = field(default_factory=dict)
    quarantine: Path | None = None
    timings: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("consume", "parse", "validate", "store", "commit"), 0.0)
    )

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())

    @property
    def rate(self) -> float:
        """Messages per second while messages were flowing (``messages / active_s``)."""
        return self.messages / self.active_s if self.active_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "group": self.group,
            "messages": self.messages,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "batches": self.batches,
            "segments": self.segments,
            "commit_failures": self.commit_failures,
            "seconds": round(self.seconds, 3),
            "joined_s": None if self.joined_s is None else round(self.joined_s, 3),
            "active_s": round(self.active_s, 3),
            "messages_per_s": round(self.rate),
            "stopped": self.stopped,
            "lag": {str(p): n for p, n in sorted(self.lag.items())},
            "total_lag": self.total_lag,
            "quarantine": str(self.quarantine) if self.quarantine else None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


# the consumer --------------------------------------------------------------------------------
class _Batch:
    """Messages taken but not yet stored."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.values: list[bytes | None] = []
        self.partitions: list[int] = []
        self.offsets: list[int] = []
        self.started: float | None = None

    def add(self, messages: Sequence[Any], now: float) -> None:
        self.values.extend([m.value() for m in messages])
        self.partitions.extend([m.partition() for m in messages])
        self.offsets.extend([m.offset() for m in messages])
        if self.started is None:
            self.started = now

    def __len__(self) -> int:
        return len(self.values)


class KafkaIngestor:
    """One consumer-group member moving a topic's JSON events into ``store`` (see the module
    documentation for the guarantees). :meth:`run` until idle or :meth:`stop`.

    ``consumer`` replaces the confluent-kafka consumer (tests); ``metrics_port`` overrides
    ``config.kafka.metrics_port`` (0: no metrics server).
    """

    def __init__(
        self,
        store: EventStore | KafkaSink,
        config: Config,
        *,
        bootstrap: str,
        topic: str,
        group: str,
        max_idle: float | None = None,
        consumer: Any = None,
        metrics_port: int | None = None,
        show_progress: bool | None = None,
    ) -> None:
        for name, value in (("bootstrap", bootstrap), ("topic", topic), ("group", group)):
            if not value or not value.strip():
                raise RecforgeError(f"kafka: {name} must not be empty")
        if max_idle is not None and not max_idle > 0:
            raise RecforgeError(f"kafka: max_idle must be positive seconds, got {max_idle}")
        settings = config.kafka
        if settings.batch_events < 1:
            raise RecforgeError(f"kafka.batch_events must be positive, got {settings.batch_events}")
        if not settings.max_batch_wait_s > 0:
            raise RecforgeError(f"kafka.max_batch_wait_s must be positive, got {settings.max_batch_wait_s}")
        if settings.session_timeout_ms < 1000:
            raise RecforgeError(
                f"kafka.session_timeout_ms must be at least 1000, got {settings.session_timeout_ms}"
            )
        self.sink = store if isinstance(store, KafkaSink) else EventSink(store)
        self.config = config
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.max_idle = max_idle
        self.metrics_port = settings.metrics_port if metrics_port is None else metrics_port
        self.report = KafkaReport(topic, group)
        self._consumer = consumer
        self._show_progress = show_progress
        self._source = f"kafka:{topic}"
        self._batch = _Batch()
        self._stopping = threading.Event()
        self._assigned: set[int] = set()
        self._next: dict[int, int] = {}  # next offset to store, per partition, as committed
        self._idle_since: float | None = None
        self._started = 0.0
        self._first_message: float | None = None
        self._quarantine: Quarantine | None = None
        self._bar: Progress | None = None
        self._metrics: _Metrics | None = None
        self._warned: set[int] = set()

    def stop(self) -> None:
        """Ask :meth:`run` to store the batch in hand, commit it and return (thread- and
        signal-safe)."""
        self._stopping.set()

    def run(self) -> KafkaReport:
        kafka = _client()
        client_log = logging.getLogger(CLIENT_LOGGER)
        quieter = _ClientLog()
        client_log.addFilter(quieter)
        try:
            consumer = self._consumer if self._consumer is not None else self._connect(kafka)
            if self._consumer is None:
                self._reach(consumer, kafka)
            quieter.quiet = False
            return self._run(consumer, kafka)
        finally:
            client_log.removeFilter(quieter)

    def _reach(self, consumer: Any, kafka: ModuleType) -> None:
        """Ask a broker for the topic's metadata; one clear error when none answers in time."""
        timeout = self.config.kafka.connect_timeout_s
        if self.max_idle is not None:
            timeout = min(timeout, self.max_idle)
        try:
            consumer.list_topics(topic=self.topic, timeout=timeout)
        except kafka.KafkaException as failure:
            consumer.close()
            error = failure.args[0] if failure.args else failure
            reason = error.str() if hasattr(error, "str") else str(error)
            raise RecforgeError(
                f"kafka: no broker at {self.bootstrap} answered within {timeout:g} s ({reason})"
            ) from None

    def _run(self, consumer: Any, kafka: ModuleType) -> KafkaReport:
        self._started = time.monotonic()
        try:
            if self.metrics_port:
                self._metrics = _Metrics(self.topic, self.config.kafka.metrics_host, self.metrics_port)
            consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            with (
                Quarantine(self.sink.home, f"kafka-{self.topic}") as quarantine,
                progress(f"kafka {self.topic}", None, enabled=self._show_progress) as bar,
            ):
                self._quarantine, self._bar = quarantine, bar
                self._loop(consumer, kafka)
                self._flush(consumer, kafka)
                self.report.lag = self._lag(consumer, kafka, final=True)
                self.report.quarantine = quarantine.written
        except BaseException:
            self._batch.clear()  # abandoned: its offsets are not committed, so it is read again
            raise
        finally:
            consumer.close()  # leaves the group; on_revoke finds no batch left
            if self._metrics is not None:
                self._metrics.close()
                self._metrics = None
        self.report.seconds = time.monotonic() - self._started
        return self.report

    # the loop -------------------------------------------------------------------------------
    def _connect(self, kafka: ModuleType) -> Any:
        timeout = self.config.kafka.session_timeout_ms
        return kafka.Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "client.id": "recforge",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": timeout,
                "heartbeat.interval.ms": max(100, min(3000, timeout // 3)),
                "log.connection.close": False,
                "logger": logging.getLogger(CLIENT_LOGGER),
            }
        )

    def _loop(self, consumer: Any, kafka: ModuleType) -> None:
        settings = self.config.kafka
        batch = self._batch
        while not self._stopping.is_set():
            now = time.monotonic()
            timeout = _POLL_S
            if batch.started is not None:
                timeout = min(timeout, batch.started + settings.max_batch_wait_s - now)
            if self.max_idle is not None and self._idle_since is not None:
                timeout = min(timeout, self._idle_since + self.max_idle - now)
            wanted = max(1, min(settings.batch_events - len(batch), _CONSUME_MAX))
            clock = time.perf_counter()
            messages = consumer.consume(num_messages=wanted, timeout=max(timeout, 0.0))
            self.report.timings["consume"] += time.perf_counter() - clock
            if messages:
                self._take(messages, kafka)
            now = time.monotonic()
            if batch.started is not None and (
                len(batch) >= settings.batch_events or now - batch.started >= settings.max_batch_wait_s
            ):
                self._flush(consumer, kafka)
            if self._idle(now):
                self.report.stopped = "idle"
                return
        self.report.stopped = "signal"

    def _idle(self, now: float) -> bool:
        """Whether ``max_idle`` seconds passed since the assignment or the last message."""
        if self.max_idle is None or self._idle_since is None:
            return False
        return now - self._idle_since >= self.max_idle

    def _take(self, messages: Sequence[Any], kafka: ModuleType) -> None:
        failed = [m for m in messages if m.error() is not None]
        if failed:
            for message in failed:
                self._message_error(message.error(), kafka)
            messages = [m for m in messages if m.error() is None]
            if not messages:
                return
        now = time.monotonic()
        self._batch.add(messages, now)
        self._idle_since = now
        if self._first_message is None:
            self._first_message = now

    def _message_error(self, error: Any, kafka: ModuleType) -> None:
        code = error.code()
        if code == kafka.KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise RecforgeError(f"kafka: fatal consumer error: {error.str()}")
        if code == kafka.KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise RecforgeError(f"kafka: topic {self.topic!r} does not exist on {self.bootstrap}")
        if code not in self._warned:  # transient (the client retries): say so once per kind
            self._warned.add(code)
            log.warning("kafka consumer: %s", error.str())

    # callbacks (called from inside consume and close) ---------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        stored = self.sink.positions(self.topic)
        if stored:  # the sink keeps its own offsets: start from them
            for tp in partitions:
                if tp.partition in stored:
                    tp.offset = stored[tp.partition]
            consumer.assign(partitions)
        now = time.monotonic()
        self._assigned = {tp.partition for tp in partitions}
        self._idle_since = now
        if self.report.joined_s is None:
            self.report.joined_s = now - self._started

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._flush(consumer, _client())  # store and commit before the partitions move on
        for tp in partitions:
            self._assigned.discard(tp.partition)
            if self._metrics is not None:
                self._metrics.forget(tp.partition)

    # a batch --------------------------------------------------------------------------------
    def _flush(self, consumer: Any, kafka: ModuleType) -> None:
        """Validate, quarantine, store (durable), then commit the batch's offsets."""
        batch = self._batch
        if not len(batch):
            return
        assert self._quarantine is not None
        timings = self.report.timings
        clock = time.perf_counter()
        partitions = np.asarray(batch.partitions, dtype=np.int64)
        offsets = np.asarray(batch.offsets, dtype=np.int64)
        result = self.sink.write(
            batch.values, partitions, offsets, self._quarantine, self._source, self.config
        )
        now = time.perf_counter()
        for stage, seconds in (result.timings or {"store": now - clock}).items():
            timings[stage] += seconds
        clock = now
        self._commit(consumer, kafka, partitions, offsets)
        timings["commit"] += time.perf_counter() - clock

        report = self.report
        report.messages += len(batch)
        report.accepted += result.accepted
        report.duplicates += result.duplicates
        report.rejected += result.rejected
        report.batches += 1
        report.segments += result.segments
        if self._first_message is not None:
            report.active_s = time.monotonic() - self._first_message
        if self._bar is not None:
            self._bar.advance(len(batch))
        if self._metrics is not None:
            lag = self._lag(consumer, kafka, final=False)
            self._metrics.record(len(batch), result.accepted, result.duplicates, result.rejected, lag)
        batch.clear()

    def _commit(self, consumer: Any, kafka: ModuleType, partitions: np.ndarray, offsets: np.ndarray) -> None:
        ends = [(int(p), int(offsets[partitions == p].max()) + 1) for p in np.unique(partitions)]
        positions = [kafka.TopicPartition(self.topic, p, end) for p, end in ends]
        try:
            committed = consumer.commit(offsets=positions, asynchronous=False) or []
        except kafka.KafkaException as failure:
            error = failure.args[0] if failure.args else None
            if error is not None and hasattr(error, "fatal") and error.fatal():
                raise RecforgeError(f"kafka: fatal error committing offsets: {error.str()}") from failure
            self._commit_failed(str(error))
            return
        for tp in committed:
            if tp.error is not None:
                self._commit_failed(f"partition {tp.partition}: {tp.error.str()}")
            else:
                self._next[tp.partition] = tp.offset

    def _commit_failed(self, why: str) -> None:
        self.report.commit_failures += 1
        log.warning(
            "kafka: offsets not committed (%s); the events are stored, so reading them again "
            "only counts them as duplicates",
            why,
        )

    def _lag(self, consumer: Any, kafka: ModuleType, *, final: bool) -> dict[int, int]:
        """Per assigned partition: high watermark minus the next offset to store.

        The high watermark is the one the latest fetch response carried (no broker round trip).
        The next offset is the one this run committed, else the consumer's position. Partitions
        not known that way are left out, except at the end (``final``), when the broker is asked
        for the watermarks and the group's committed offset (the low watermark for a partition
        never committed) stands in for the position."""
        marks: dict[int, tuple[int, int]] = {}
        for p in sorted(self._assigned):
            tp = kafka.TopicPartition(self.topic, p)
            try:
                marks[p] = consumer.get_watermark_offsets(tp, cached=True)
                if final and marks[p][1] < 0:
                    marks[p] = consumer.get_watermark_offsets(tp, cached=False, timeout=10)
            except kafka.KafkaException:
                marks.pop(p, None)
        start: dict[int, int] = {}
        missing = [p for p in marks if p not in self._next]
        if missing:
            for tp in consumer.position([kafka.TopicPartition(self.topic, p) for p in missing]):
                if tp.offset >= 0:
                    start[tp.partition] = tp.offset
        missing = [p for p in missing if p not in start]
        if final and missing:
            try:
                asked = [kafka.TopicPartition(self.topic, p) for p in missing]
                committed = consumer.committed(asked, timeout=10)
            except kafka.KafkaException:
                committed = []
            for tp in committed:
                start[tp.partition] = tp.offset if tp.offset >= 0 else marks[tp.partition][0]
        lag = {}
        for p, (_, high) in marks.items():
            begin = self._next.get(p, start.get(p))
            if high >= 0 and begin is not None and begin >= 0:
                lag[p] = max(high - begin, 0)
        return lag


class _ClientLog(logging.Filter):
    """librdkafka's log lines: none while ``quiet`` (the first contact, whose failure is reported
    as one error), then each kind (the text with its numbers masked) at most once a minute."""

    def __init__(self) -> None:
        super().__init__()
        self.quiet = True
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.quiet:
            return False
        kind = re.sub(r"\d+", "#", record.getMessage())
        now = time.monotonic()
        if now - self._last.get(kind, -math.inf) < _CLIENT_LOG_EVERY_S:
            return False
        if len(self._last) > 1000:  # bounded memory
            self._last.clear()
        self._last[kind] = now
        return True


# metrics -------------------------------------------------------------------------------------
class _Metrics:
    """Prometheus metrics of one ingestor, on a registry of their own, served over HTTP."""

    def __init__(self, topic: str, host: str, port: int) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise RecforgeError(
                "kafka metrics need prometheus-client: pip install 'recforge[serve]'"
            ) from None
        self.topic = topic
        self.registry = prom.CollectorRegistry()
        self.lag = prom.Gauge(
            "recforge_kafka_consumer_lag",
            "Messages on the broker not yet stored, per partition (high watermark - next offset)",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.messages = prom.Counter(
            "recforge_kafka_messages", "Messages consumed", ["topic"], registry=self.registry
        )
        self.events = prom.Counter(
            "recforge_kafka_events",
            "Consumed events by outcome: accepted, duplicate, rejected",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self.batches = prom.Counter(
            "recforge_kafka_batches", "Batches stored and committed", ["topic"], registry=self.registry
        )
        self.server, self._thread = prom.start_http_server(port, addr=host, registry=self.registry)

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def record(
        self, messages: int, accepted: int, duplicates: int, rejected: int, lag: dict[int, int]
    ) -> None:
        self.messages.labels(self.topic).inc(messages)
        for outcome, count in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
            self.events.labels(self.topic, outcome).inc(count)
        self.batches.labels(self.topic).inc()
        for partition, value in lag.items():
            self.lag.labels(self.topic, str(partition)).set(value)

    def forget(self, partition: int) -> None:
        with suppress(KeyError):
            self.lag.remove(self.topic, str(partition))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# running it ----------------------------------------------------------------------------------
def ingest_kafka(
    store: EventStore | KafkaSink,
    config: Config,
    *,
    bootstrap: str,
    topic: str,
    group: str,
    max_idle: float | None = None,
    metrics_port: int | None = None,
    show_progress: bool | None = None,
    consumer: Any = None,
) -> KafkaReport:
    """Consume ``topic`` as a member of ``group`` into ``store`` until ``max_idle`` seconds pass
    without a message (never, when ``None``) or SIGTERM/SIGINT arrives; a second signal kills
    the process as usual (safe: nothing uncommitted is lost, it is read again). ``consumer``
    replaces the confluent-kafka consumer (tests)."""
    ingestor = KafkaIngestor(
        store,
        config,
        bootstrap=bootstrap,
        topic=topic,
        group=group,
        max_idle=max_idle,
        metrics_port=metrics_port,
        show_progress=show_progress,
        consumer=consumer,
    )
    with _stop_on_signals(ingestor.stop):
        return ingestor.run()


def run_ingestors(ingestors: Sequence[KafkaIngestor]) -> list[KafkaReport]:
    """Run several ingestors (e.g. an events topic and an items topic) side by side, one thread
    each, until each stops (``max_idle``) or SIGTERM/SIGINT stops them all; their reports in
    order. An ingestor that fails stops the others and its error is raised."""
    reports: list[KafkaReport | None] = [None] * len(ingestors)
    errors: list[BaseException] = []

    def stop_all() -> None:
        for ingestor in ingestors:
            ingestor.stop()

    def run(j: int) -> None:
        try:
            reports[j] = ingestors[j].run()
        except BaseException as error:
            errors.append(error)
            stop_all()

    with _stop_on_signals(stop_all):
        threads = [threading.Thread(target=run, args=(j,), name=f"kafka-{j}") for j in range(len(ingestors))]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():  # joined in slices: signals are handled on the main thread
                thread.join(0.2)
    if errors:
        raise errors[0]
    return [report for report in reports if report is not None]


@contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop`` once, then have their previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: Any) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
        stop()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _client() -> ModuleType:
    try:
        import confluent_kafka
    except ImportError:
        raise RecforgeError("kafka ingestion needs confluent-kafka: pip install 'recforge[kafka]'") from None
    return confluent_kafka


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")
