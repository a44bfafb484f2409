"""Impressions: what the server showed, to whom, from which version, durable beside the events.

Every answer of the recommendation and similar-items routes is one impression: its
``recommendation_id``, the user (``None`` for similar items asked without one), the anchor item
(similar items only), the model version and source that answered, the experiment and arm
(when one ran), the items shown (best first: position ``p`` is ``items[p]``) and the time.

Layout under ``<home>/impressions/``::

    part-<token>.arrows    an open log: one writer appends Arrow IPC record batches to it
    part-<token>.parquet   a sealed part: the same rows, written whole and renamed into place

``<token>`` is the log's start time (16 hex digits of microseconds) and 8 random hex digits,
so parts sort by time.

**Writing.** One :class:`ImpressionWriter` appends to a log: each batch it is given is one
record batch, written to the operating system at once and fsync'd every ``sync_ms``. A written
batch is in the page cache, which outlives the process: a writer killed at any moment (SIGKILL,
OOM) loses only a batch half-written, which readers skip, and a machine that loses power at most
the batches of the last ``sync_ms``. (An fsync costs milliseconds of CPU here, mostly in the
kernel; event intake, whose 202 promises durability, fsyncs every group commit instead.) A
server's writer runs in a process of its own, fed every ``flush_ms / 2`` by the server's queue
(:mod:`recforge.online.recorder`), so a killed server loses at most its last ``flush_ms`` of
impressions. The writer holds an exclusive ``flock`` on its log; after ``SEAL_ROWS`` rows or
``SEAL_SECONDS`` seconds, and when it closes, it seals the log.

**Sealing** reads a log's complete batches, writes them as Parquet to a temporary name, fsyncs,
renames it to ``part-<token>.parquet``, fsyncs the directory and deletes the log. A reader takes
the Parquet part when both exist, so a seal killed after its rename shows each row once. A log
whose lock nobody holds belongs to a dead writer: :meth:`ImpressionStore.recover` (run when a
server starts recording) seals it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from recforge._files import fsync_path
from recforge._time import to_us

__all__ = [
    "IMPRESSION_SCHEMA",
    "Impression",
    "ImpressionStore",
    "ImpressionWriter",
    "check_intervals",
    "new_recommendation_id",
]

log = logging.getLogger("recforge.online")

IMPRESSION_SCHEMA = pa.schema(
    [
        pa.field("recommendation_id", pa.large_string(), nullable=False),
        pa.field("user_id", pa.large_string(), nullable=True),
        pa.field("item_id", pa.large_string(), nullable=True),
        pa.field("version", pa.large_string(), nullable=False),
        pa.field("source", pa.large_string(), nullable=False),
        pa.field("experiment", pa.large_string(), nullable=True),
        pa.field("arm", pa.large_string(), nullable=True),
        pa.field("items", pa.large_list(pa.large_string()), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

#: A writer seals its log after this many rows ...
SEAL_ROWS = 1_000_000
#: ... or this many seconds, whichever comes first.
SEAL_SECONDS = 3600.0
#: Impressions held in memory at most while the disk refuses writes (the oldest are dropped).
MAX_PENDING = 1_000_000

_PART = re.compile(r"^part-([0-9a-f]{16}-[0-9a-f]{8})\.(arrows|parquet)$")
_PREFIX = secrets.token_hex(6)
_COUNTER = iter(range(1, 2**63))
_COMPRESSION = "zstd"
_TIME = pa.timestamp("us", tz="UTC")


def new_recommendation_id() -> str:
    """A new id, unique without coordination: 48 random bits per process, then a counter
    (``r`` + 12 + hex digits; ``next`` on an ``itertools`` count is atomic under the GIL)."""
    return f"r{_PREFIX}{next(_COUNTER):x}"


def _reseed_after_fork() -> None:  # a forked worker must not repeat its parent's ids
    global _PREFIX, _COUNTER
    _PREFIX = secrets.token_hex(6)
    _COUNTER = iter(range(1, 2**63))


os.register_at_fork(after_in_child=_reseed_after_fork)


class Impression(NamedTuple):
    """One answer as recorded (the row layout of :data:`IMPRESSION_SCHEMA`)."""

    recommendation_id: str
    user_id: str | None
    item_id: str | None
    version: str
    source: str
    experiment: str | None
    arm: str | None
    items: list[str]
    timestamp_us: int


def to_table(rows: list[Impression]) -> pa.Table:
    """Impressions as an :data:`IMPRESSION_SCHEMA` table."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(IMPRESSION_SCHEMA)
    # (integers convert to the timestamp type as microseconds directly)
    arrays = [
        pa.array(values, type=field.type) for field, values in zip(IMPRESSION_SCHEMA, columns, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=IMPRESSION_SCHEMA)


class ImpressionStore:
    """The impressions under ``<home>/impressions/`` (safe to read while servers write)."""

    def __init__(self, home: str | Path) -> None:
        self.root = Path(home) / "impressions"

    def parts(self) -> dict[str, Path]:
        """Each part's token and the file to read for it (the Parquet part when it is sealed)."""
        found: dict[str, Path] = {}
        if not self.root.exists():
            return found
        for entry in os.scandir(self.root):
            match = _PART.match(entry.name)
            if match and (match[2] == "parquet" or match[1] not in found):
                found[match[1]] = Path(entry.path)
        return dict(sorted(found.items()))

    def scan(self, start: datetime | None = None, end: datetime | None = None) -> pa.Table:
        """Impressions with ``start <= timestamp < end`` (either bound optional), parts by start
        time, rows in the order they were recorded within each (sealed parts are filtered as
        they are read, skipping row groups outside the bounds)."""
        time_ = ds.field("timestamp")
        bounds = []
        if start is not None:
            bounds.append(time_ >= pa.scalar(to_us(start), pa.int64()).cast(_TIME))
        if end is not None:
            bounds.append(time_ < pa.scalar(to_us(end), pa.int64()).cast(_TIME))
        where = None
        for bound in bounds:
            where = bound if where is None else where & bound
        tables = []
        for path in self.parts().values():
            if path.suffix == ".parquet":
                part = ds.dataset(str(path), schema=IMPRESSION_SCHEMA, format="parquet")
                tables.append(part.to_table(filter=where))
            else:
                log = _read_log(path)
                tables.append(log if where is None else log.filter(where))
        return pa.concat_tables(tables) if tables else IMPRESSION_SCHEMA.empty_table()

    def recover(self) -> int:
        """Seal every log no live writer holds; returns how many were sealed."""
        sealed = 0
        for token, path in self.parts().items():
            if path.suffix != ".arrows":
                continue
            try:
                handle = path.open("rb")
            except FileNotFoundError:  # sealed meanwhile
                continue
            with handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer's
                self.seal(token)
                sealed += 1
        return sealed

    def seal(self, token: str) -> Path | None:
        """Write the log ``token``'s complete batches as its Parquet part and delete the log
        (the caller holds the log's lock). ``None`` when it held no rows."""
        source = self.root / f"part-{token}.arrows"
        final = self.root / f"part-{token}.parquet"
        if final.exists():  # sealed already; only the log was left behind
            source.unlink(missing_ok=True)
            return final
        table = _read_log(source)
        if not table.num_rows:
            source.unlink(missing_ok=True)
            return None
        tmp = self.root / f".tmp-{token}-{secrets.token_hex(4)}"
        try:
            pq.write_table(table, tmp, compression=_COMPRESSION)
            fsync_path(tmp)
            os.rename(tmp, final)
            fsync_path(self.root, directory=True)
        finally:
            tmp.unlink(missing_ok=True)
        source.unlink(missing_ok=True)
        return final


def _read_log(path: Path) -> pa.Table:
    """The complete record batches of a log (a batch cut short by a crash, or still being
    written, is left out)."""
    batches = []
    try:
        with path.open("rb") as handle:
            reader = pa.ipc.open_stream(handle)
            while True:
                try:
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
    except (FileNotFoundError, pa.ArrowInvalid, OSError):
        pass  # a log sealed meanwhile, or one whose schema is not even written yet, or the cut
    return pa.Table.from_batches(batches, schema=IMPRESSION_SCHEMA)


class ImpressionWriter:
    """Appends impressions to one open log of a store (see the module docstring), in the process
    that owns it: the writer process of a server (:mod:`recforge.online.recorder`), or any
    process that records impressions itself.

    ``write(rows)`` appends them, after any rows a failed write left, as one record batch;
    ``due()`` is the seconds until ``tick()`` has work (retrying a failed write every
    ``flush_ms / 2``, an fsync ``sync_ms`` after a write, sealing an old log); ``take_counts()``
    the rows written and dropped since it was last asked; ``close()`` writes what is left and
    seals the log.
    """

    def __init__(self, store: ImpressionStore, flush_ms: int = 200, sync_ms: int = 1000) -> None:
        check_intervals(flush_ms, sync_ms)
        self.store = store
        self.flush_ms = flush_ms
        self.sync_ms = sync_ms
        self.dropped = 0
        self._pending: list[Any] = []  # rows a failed write kept, oldest first
        self._retry_at = 0.0
        self._written_since = 0
        self._dropped_since = 0
        self._file: IO[bytes] | None = None
        self._stream: Any = None
        self._token = ""
        self._rows = 0
        self._opened = 0.0
        self._synced = 0.0
        self._unsynced = False
        self._failing = False

    def write(self, rows: Sequence[Any]) -> int:
        """Append ``rows`` (:class:`Impression` or plain tuples in its field order) and any kept
        rows; returns how many were written (0 when the write failed and they were kept)."""
        self._pending.extend(rows)
        if not self._pending:
            return 0
        table = to_table(self._pending)
        try:
            self._append(table)
        except OSError as error:
            excess = len(self._pending) - MAX_PENDING
            if excess > 0:  # the oldest go first
                del self._pending[:excess]
                self.dropped += excess
                self._dropped_since += excess
            if not self._failing:
                log.error("could not write impressions (kept in memory, retrying): %s", error)
            self._failing = True
            self._retry_at = time.monotonic() + self.flush_ms / 2000
            self._close_log()
            return 0
        if self._failing:
            log.info("impressions are written again")
            self._failing = False
        written = len(self._pending)
        self._pending = []
        self._written_since += written
        if self._rows >= SEAL_ROWS:
            self._seal()
        return written

    def take_counts(self) -> tuple[int, int]:
        """(rows written, rows dropped) since the last call."""
        counts = self._written_since, self._dropped_since
        self._written_since = self._dropped_since = 0
        return counts

    def due(self) -> float | None:
        """Seconds until :meth:`tick` has work; ``None`` when it has none until the next write."""
        moments = []
        if self._pending:
            moments.append(self._retry_at)
        if self._unsynced:
            moments.append(self._synced + self.sync_ms / 1000)
        if self._file is not None:
            moments.append(self._opened + SEAL_SECONDS)
        if not moments:
            return None
        return max(min(moments) - time.monotonic(), 0.0)

    def tick(self) -> None:
        """Do what is due: retry a failed write, fsync, seal a log older than ``SEAL_SECONDS``."""
        now = time.monotonic()
        if self._pending and now >= self._retry_at:
            self.write(())
        if self._unsynced and now - self._synced >= self.sync_ms / 1000:
            self.sync()
        if self._file is not None and now - self._opened >= SEAL_SECONDS:
            self._seal()

    def close(self) -> None:
        """Write what is kept (once more; what still fails is lost, and logged), then seal."""
        self.write(())
        if self._pending:
            log.error("%d impressions could not be written and are lost", len(self._pending))
            self.dropped += len(self._pending)
            self._pending = []
        self._seal()

    def _append(self, table: pa.Table) -> None:
        if self._file is None:
            self._open_log()
        assert self._file is not None
        for batch in table.to_batches():
            self._stream.write_batch(batch)
        self._file.flush()
        self._unsynced = True
        self._rows += table.num_rows

    def sync(self) -> None:
        """fsync what was written to the log (tried again after ``sync_ms`` when it fails)."""
        if self._file is None:
            return
        self._synced = time.monotonic()
        try:
            os.fsync(self._file.fileno())
        except OSError as error:  # (and the seal fsyncs its Parquet)
            log.error("could not fsync the impression log: %s", error)
            return
        self._unsynced = False

    def _open_log(self) -> None:
        self.store.root.mkdir(parents=True, exist_ok=True)
        self._token = f"{time.time_ns() // 1000:016x}-{secrets.token_hex(4)}"
        path = self.store.root / f"part-{self._token}.arrows"
        handle = path.open("xb")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._stream = pa.ipc.new_stream(handle, IMPRESSION_SCHEMA)
            handle.flush()
            os.fsync(handle.fileno())
            fsync_path(self.store.root, directory=True)
        except BaseException:
            handle.close()
            path.unlink(missing_ok=True)
            raise
        self._file = handle
        self._rows = 0
        self._opened = self._synced = time.monotonic()

    def _close_log(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                self._stream.close()
            if self._unsynced:  # what was written stays durable as far as it can be
                with contextlib.suppress(OSError):
                    os.fsync(self._file.fileno())
            self._file.close()  # releases the lock: the log is a dead writer's from now on
            self._file = None
            self._stream = None
            self._unsynced = False

    def _seal(self) -> None:
        if self._file is None:
            return
        token = self._token
        try:
            self.store.seal(token)  # under our lock: nobody else seals it meanwhile
            self._unsynced = False  # its rows are in the fsync'd Parquet part; the log is gone
        except OSError as error:
            log.error("could not seal impression log %s (recovered later): %s", token, error)
        finally:
            self._close_log()


def check_intervals(flush_ms: int, sync_ms: int) -> None:
    """Raise ``ValueError`` unless both intervals are at least 1 ms."""
    if flush_ms < 1:
        raise ValueError(f"flush_ms must be >= 1, got {flush_ms}")
    if sync_ms < 1:
        raise ValueError(f"sync_ms must be >= 1, got {sync_ms}")
