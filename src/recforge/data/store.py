"""The event store: immutable Parquet segments under ``<home>/events/``, read in place by DuckDB.

Layout::

    events/seg-0000000007-0000000007.parquet   a segment: events committed as sequence 7
    events/seg-0000000001-0000000006.parquet   the compaction of sequences 1..6
    events/_index/<segment>.keys.npy           the segment's event keys (a cache, rebuildable)
    events/.tmp-<pid>-<hex>                     a segment being written (invisible to readers)
    events/_commit.lock, _compact.lock          fcntl locks

**Atomic commits.** A writer streams rows into a hidden temporary file, fsyncs it, then, holding
the commit lock, renames it to the next sequence number and fsyncs the directory. A reader
lists ``seg-*.parquet``, so it sees a segment whole or not at all; a writer killed at any
point leaves at most a hidden temporary file (deleted by the next compaction).

**Deduplication.** Every event has an ``event_id`` (derived from its content when the source
gave none, see :mod:`recforge.data.keys`); an event whose id is already stored, or repeated
within the batch, is counted as a duplicate and dropped. Writers dedupe against the segments
that existed when they started, and under the commit lock against any committed since, so
two processes ingesting at once lose nothing and never store an id twice.

**Compaction** writes adjacent small segments ``a..b`` into one segment named
``seg-<a>-<b>`` and then deletes them. A segment whose sequence range lies inside another's
is superseded and ignored by readers, so a compaction killed after its rename shows each event
once; the leftovers are deleted by the next compaction.

**Erasure.** Deleted events are hidden by tombstones (:mod:`recforge.data.tombstones`) from
every read at once; compaction rewrites each segment that holds erased events without them
(under the same name, replaced atomically), so they are then gone from disk too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recforge._files import fsync_path, save_npy_atomic
from recforge.data.keys import KeyLog, Keys, contains_any, derive_event_ids, first_occurrences, hash128
from recforge.data.schema import COLUMNS, EVENT_SCHEMA
from recforge.data.tombstones import Tombstones

__all__ = ["AppendResult", "CompactResult", "EventStore", "Segment", "SegmentWriter"]

_SEGMENT = re.compile(r"^seg-(\d{10})-(\d{10})\.parquet$")
_TMP = re.compile(r"^\.tmp-(\d+)-[0-9a-f]+$")
_COMPRESSION = "zstd"


@dataclass(frozen=True)
class Segment:
    """One segment file and the commit sequence numbers it holds."""

    path: Path
    first: int
    last: int
    name: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.path.name)

    @property
    def rows(self) -> int:
        return int(pq.read_metadata(self.path).num_rows)


@dataclass(frozen=True)
class AppendResult:
    """What a commit stored: ``accepted`` new events, ``duplicates`` dropped, the new segment."""

    accepted: int
    duplicates: int
    segment: Path | None


@dataclass(frozen=True)
class CompactResult:
    """Segments before and after, how many were merged into how many, and how many erased
    events were removed from disk."""

    before: int
    after: int
    merged: int
    written: int
    erased: int = 0


class EventStore:
    """The events under ``<home>/events/``. Safe to use from several processes at once."""

    def __init__(self, home: str | Path) -> None:
        self.home = Path(home)
        self.root = self.home / "events"
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "_index").mkdir(exist_ok=True)
        self._keys: dict[str, Keys] = {}
        self._listed: dict[str, Segment] = {}
        self._live_of: dict[str, Segment] = {}
        self._live: list[Segment] = []
        # Every key of the segments with sequence numbers up to _indexed_upto, merged into a few
        # sorted sets, so a writer checks a batch against O(log n) arrays, not one per segment.
        self._index = KeyLog()
        self._indexed_upto = 0
        self._index_lock = threading.Lock()
        self.tombstones = Tombstones(self.root)

    def __repr__(self) -> str:
        return f"EventStore({str(self.home)!r})"

    # listing ------------------------------------------------------------------------------
    def segments(self) -> list[Segment]:
        """The live segments in sequence order (superseded ones left out)."""
        listed = self._all_segments()
        if listed.keys() == self._live_of.keys():  # nothing changed since the last listing
            return list(self._live)
        live: list[Segment] = []
        reach = -1
        for segment in sorted(listed.values(), key=lambda s: (s.first, -s.last)):
            if segment.last <= reach:
                continue  # inside a compacted segment that replaced it
            live.append(segment)
            reach = segment.last
        self._live_of, self._live = listed, live
        return list(live)

    def _all_segments(self) -> dict[str, Segment]:
        """Every segment file by name (Segment objects are reused across listings)."""
        listed = self._listed
        found: dict[str, Segment] = {}
        for entry in os.scandir(self.root):
            name = entry.name
            segment = listed.get(name)
            if segment is None:
                match = _SEGMENT.match(name)
                if not match:
                    continue
                segment = Segment(Path(entry.path), int(match[1]), int(match[2]))
            found[name] = segment
        self._listed = found
        return found

    # writing ------------------------------------------------------------------------------
    def writer(self) -> SegmentWriter:
        """A writer of one new segment: ``write`` tables, then ``commit`` (or ``abort``)."""
        return SegmentWriter(self)

    def append(self, table: pa.Table) -> AppendResult:
        """Store validated events (:data:`EVENT_SCHEMA` columns; ``event_id`` may be null or
        absent) as one segment; durable when this returns."""
        with self.writer() as writer:
            writer.write(table)
            return writer.commit()

    # reading ------------------------------------------------------------------------------
    def scan(
        self,
        columns: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        skip_prefix: str = "",
    ) -> pa.Table:
        """Events with ``start <= timestamp < end`` (either bound optional), in commit order;
        never erased ones, nor (given ``skip_prefix``) those whose ``event_id`` starts with it."""
        columns = list(COLUMNS if columns is None else columns)
        unknown = [c for c in columns if c not in COLUMNS]
        if unknown:
            raise ValueError(f"unknown event columns {unknown}; columns: {list(COLUMNS)}")
        schema = pa.schema([EVENT_SCHEMA.field(c) for c in columns])
        erasing = len(self.tombstones) > 0
        read = list(columns)
        if erasing:  # the tombstones are matched on these
            read += [c for c in ("user_id", "item_id", "timestamp") if c not in read]
        where, window = _window(start, end)
        params: list[Any] = list(window)
        if skip_prefix:
            where += (" AND " if where else " WHERE ") + "NOT starts_with(coalesce(event_id, ''), ?)"
            params.append(skip_prefix)
        select = ", ".join(f'"{c}"' for c in read)

        def query(con: duckdb.DuckDBPyConnection, files: list[str]) -> pa.Table:
            # by name: segments written before a nullable column existed read it as null
            sql = f"SELECT {select} FROM read_parquet(?, union_by_name = true){where}"
            return con.sql(sql, params=[files, *params]).to_arrow_table()

        result = self._query(query)
        if result is None:
            return schema.empty_table()
        if erasing:
            erased = self.tombstones.erased(result)
            if erased.any():
                result = result.filter(pa.array(~erased))
            result = result.select(columns)
        return result.cast(schema)

    def stats(self) -> dict[str, Any]:
        """``events``, ``users``, ``items``, ``first``/``last`` (ISO 8601, UTC), ``event_types``
        (count per type), ``segments`` and ``bytes`` (on disk)."""

        stones = self.tombstones.table()

        def query(con: duckdb.DuckDBPyConnection, files: list[str]) -> dict[str, Any]:
            live = "read_parquet(?)"
            if stones.num_rows:  # erased events are no events
                con.register("tombstones", stones)
                live = f"(SELECT * FROM read_parquet(?) e WHERE {self.tombstones.sql_filter('e')})"
            row = con.sql(
                "SELECT count(*), count(DISTINCT user_id), count(DISTINCT item_id), "
                f"epoch_us(min(timestamp)), epoch_us(max(timestamp)) FROM {live}",
                params=[files],
            ).fetchall()[0]
            types = con.sql(
                f"SELECT event_type, count(*) FROM {live} GROUP BY 1 ORDER BY 1", params=[files]
            ).fetchall()
            return {
                "events": int(row[0]),
                "users": int(row[1]),
                "items": int(row[2]),
                "first": _iso(row[3]),
                "last": _iso(row[4]),
                "event_types": {str(name): int(count) for name, count in types},
            }

        live = self.segments()
        stats = self._query(query) or {
            "events": 0,
            "users": 0,
            "items": 0,
            "first": None,
            "last": None,
            "event_types": {},
        }
        stats["segments"] = len(live)
        stats["bytes"] = sum(s.path.stat().st_size for s in live if s.path.exists())
        return stats

    def _query(self, run: Any) -> Any:
        """``run(connection, files)`` over the live segments; ``None`` when there are none.
        Retried when a compaction removes a file between listing and reading."""
        for attempt in range(3):
            files = [str(s.path) for s in self.segments()]
            if not files:
                return None
            con = duckdb.connect()
            try:
                con.execute("SET TimeZone = 'UTC'")
                return run(con, files)
            except duckdb.IOException:
                if attempt == 2 or all(Path(f).exists() for f in files):
                    raise
            finally:
                con.close()
        return None  # pragma: no cover

    # compaction ---------------------------------------------------------------------------
    def compact(self, target_rows: int = 4_000_000) -> CompactResult:
        """Merge runs of adjacent segments smaller than ``target_rows`` into segments of at most
        ``target_rows`` rows, and rewrite every other segment holding erased events without them;
        also delete superseded segments and dead writers' temporary files. Safe to kill at any
        point, and to run beside writers."""
        if target_rows < 1:
            raise ValueError(f"target_rows must be positive, got {target_rows}")
        with _locked(self.root / "_compact.lock"):
            with _locked(self.root / "_commit.lock"):
                self._collect_garbage()
            live = self.segments()
            groups = _plan(live, [s.rows for s in live], target_rows)
            erased = 0
            for group in groups:
                erased += self._merge(group)
            merged = {s.name for group in groups for s in group}
            for segment in self._holding_erased([s for s in live if s.name not in merged]):
                erased += self._merge([segment])
            after = len(self.segments())
        return CompactResult(len(live), after, sum(len(g) for g in groups), len(groups), erased)

    def _holding_erased(self, segments: list[Segment]) -> list[Segment]:
        """The segments with at least one erased event."""
        stones = self.tombstones.table()
        if not stones.num_rows or not segments:
            return []
        by_path = {str(s.path): s for s in segments}
        con = duckdb.connect()
        try:
            con.register("tombstones", stones)
            rows = con.sql(
                "SELECT DISTINCT filename FROM read_parquet(?, filename = true) e "
                f"WHERE NOT ({self.tombstones.sql_filter('e')})",
                params=[list(by_path)],
            ).fetchall()
        finally:
            con.close()
        return [by_path[name] for (name,) in rows if name in by_path]

    def _merge(self, group: list[Segment]) -> int:
        """Write ``group`` as one segment (its name spans theirs) without its erased events;
        returns how many were erased."""
        tmp = self._tmp_path()
        erased = 0
        try:
            with pq.ParquetWriter(tmp, EVENT_SCHEMA, compression=_COMPRESSION) as out:
                for segment in group:
                    for batch in pq.ParquetFile(segment.path).iter_batches(batch_size=1 << 20):
                        table = _upgrade(pa.Table.from_batches([batch]))
                        gone = self.tombstones.erased(table)
                        if gone.any():
                            erased += int(gone.sum())
                            table = table.filter(pa.array(~gone))
                        out.write_table(table)
            fsync_path(tmp)
            if erased:  # some keys are gone with their events: read what was written
                keys = Keys(*hash128(pq.read_table(tmp, columns=["event_id"]).column("event_id")))
            else:
                keys = Keys.merge([self.keys(s) for s in group])
            with _locked(self.root / "_commit.lock"):
                final = self.root / f"seg-{group[0].first:010d}-{group[-1].last:010d}.parquet"
                os.replace(tmp, final)
                fsync_path(self.root, directory=True)
                for segment in group:
                    if segment.path != final:
                        self._delete(segment.path)
                self._keys.pop(final.name, None)
                self._save_keys(final.name, keys)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return erased

    def _collect_garbage(self) -> None:
        """Delete superseded segments, keys of missing segments, dead writers' temporary files."""
        live = {s.name for s in self.segments()}
        for segment in self._all_segments().values():
            if segment.name not in live:
                self._delete(segment.path)
        for entry in os.scandir(self.root / "_index"):
            if entry.name.removesuffix(".keys.npy") not in live:
                os.unlink(entry.path)
        for entry in os.scandir(self.root):
            match = _TMP.match(entry.name)
            if match and not _alive(int(match[1])):
                os.unlink(entry.path)

    def _delete(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.root / "_index" / f"{path.name}.keys.npy").unlink()
        self._keys.pop(path.name, None)

    # keys ---------------------------------------------------------------------------------
    def keys(self, segment: Segment) -> Keys:
        """The event keys of a segment: cached, else read from its key file, else rebuilt."""
        cached = self._keys.get(segment.name)
        if cached is not None:
            return cached
        keys = self._read_keys(segment)
        self._keys[segment.name] = keys
        return keys

    def stored_keys(self, live: list[Segment]) -> list[Keys]:
        """The keys of all ``live`` segments, as a few sorted sets (a snapshot of an index kept
        across writers, so the cost of a dedupe check does not grow with the segment count).

        Sequence numbers are given out in increasing order under the commit lock, so every
        segment with ``last <= _indexed_upto`` holds only events already indexed (a compaction
        rewrites indexed events); only newer segments are read. Call under the commit lock.
        """
        with self._index_lock:
            upto = self._indexed_upto
            for segment in live:
                if segment.last > upto:
                    cached = self._keys.pop(segment.name, None)
                    self._index.add(cached if cached is not None else self._read_keys(segment))
            self._indexed_upto = max([upto, *(s.last for s in live)])
            return list(self._index.parts)

    def _read_keys(self, segment: Segment) -> Keys:
        path = self.root / "_index" / f"{segment.name}.keys.npy"
        keys = None
        with contextlib.suppress(OSError, ValueError):
            keys = Keys.from_array(np.load(path, allow_pickle=False))
            if len(keys) != segment.rows:
                keys = None
        if keys is None:
            ids = pq.read_table(segment.path, columns=["event_id"]).column("event_id")
            keys = Keys(*hash128(ids))
            self._save_keys(segment.name, keys)
        return keys

    def _save_keys(self, name: str, keys: Keys) -> None:
        save_npy_atomic(self.root / "_index" / f"{name}.keys.npy", keys.to_array(), durable=False)

    def _tmp_path(self) -> Path:
        return self.root / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"

    def _next_sequence(self) -> int:
        return max((s.last for s in self._all_segments().values()), default=0) + 1


class SegmentWriter:
    """Streams events into one new segment; nothing is visible until :meth:`commit`.

    ``write`` drops events whose id is already stored or already written here, and returns
    ``(accepted, duplicates)`` for that table. Use as a context manager: leaving the block
    without committing aborts (deletes the temporary file).
    """

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._tmp = store._tmp_path()
        self._out: pq.ParquetWriter | None = None
        with _locked(store.root / "_commit.lock"):  # compaction deletes only under this lock
            self._known = store.segments()
            self._stored = store.stored_keys(self._known)
        self._mine = KeyLog()
        self.accepted = 0
        self.duplicates = 0
        self._done = False

    def write(self, table: pa.Table) -> tuple[int, int]:
        if self._done:
            raise RuntimeError("this segment writer is already committed or aborted")
        table = _conform(table)
        hi, lo = hash128(table.column("event_id"))
        keep = first_occurrences(hi, lo)
        keep[keep] &= ~contains_any(self._stored, hi[keep], lo[keep])
        keep[keep] &= ~self._mine.contains(hi[keep], lo[keep])
        accepted = int(keep.sum())
        duplicates = table.num_rows - accepted
        if accepted:
            if self._out is None:
                self._out = pq.ParquetWriter(self._tmp, EVENT_SCHEMA, compression=_COMPRESSION)
            self._out.write_table(table.filter(pa.array(keep)) if duplicates else table)
            self._mine.add(Keys(hi[keep], lo[keep]))
        self.accepted += accepted
        self.duplicates += duplicates
        return accepted, duplicates

    def commit(self) -> AppendResult:
        """Make the written events durable and visible as one segment (none if all were
        duplicates)."""
        if self._done:
            raise RuntimeError("this segment writer is already committed or aborted")
        self._done = True
        if self._out is None:
            return AppendResult(0, self.duplicates, None)
        self._out.close()
        fsync_path(self._tmp)
        store = self._store
        try:
            with _locked(store.root / "_commit.lock"):
                seen = {s.name for s in self._known}
                newer = [s for s in store.segments() if s.name not in seen]
                keys = self._mine.keys()
                if newer:
                    keys = self._drop_committed_meanwhile(keys, newer)
                if not len(keys):
                    return AppendResult(0, self.duplicates, None)
                sequence = store._next_sequence()
                final = store.root / f"seg-{sequence:010d}-{sequence:010d}.parquet"
                os.rename(self._tmp, final)
                fsync_path(store.root, directory=True)
                store._save_keys(final.name, keys)
                store._keys[final.name] = keys
                return AppendResult(self.accepted, self.duplicates, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()

    def _drop_committed_meanwhile(self, keys: Keys, newer: list[Segment]) -> Keys:
        """Rewrite the temporary file without events another writer committed since we began."""
        clash = contains_any([self._store.keys(s) for s in newer], keys.hi, keys.lo)
        if not clash.any():
            return keys
        table = pq.read_table(self._tmp).cast(EVENT_SCHEMA)
        hi, lo = hash128(table.column("event_id"))
        keep = ~contains_any([self._store.keys(s) for s in newer], hi, lo)
        dropped = int((~keep).sum())
        self.accepted -= dropped
        self.duplicates += dropped
        pq.write_table(table.filter(pa.array(keep)), self._tmp, compression=_COMPRESSION)
        fsync_path(self._tmp)
        return Keys(hi[keep], lo[keep])

    def abort(self) -> None:
        self._done = True
        if self._out is not None:
            self._out.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._done:
            self.abort()


# helpers -------------------------------------------------------------------------------------
def _conform(table: pa.Table) -> pa.Table:
    """Cast to :data:`EVENT_SCHEMA`, checking required values and deriving missing event ids."""
    n = table.num_rows
    columns = {}
    for field in EVENT_SCHEMA:
        if field.name in table.column_names:
            column = table.column(field.name).cast(field.type)
        elif field.nullable:
            column = pa.chunked_array([pa.nulls(n, field.type)])
        else:
            raise ValueError(f"events lack the column {field.name!r}")
        if not field.nullable and column.null_count:
            raise ValueError(f"events have nulls in {field.name!r}; validate them first")
        columns[field.name] = column.combine_chunks()
    table = pa.table(columns, schema=EVENT_SCHEMA)
    if table.column("event_id").null_count:
        missing = table.column("event_id").is_null().combine_chunks()
        derived = derive_event_ids(table.filter(missing))
        ids = pc.replace_with_mask(table.column("event_id").combine_chunks(), missing, derived)
        table = table.set_column(0, EVENT_SCHEMA.field("event_id"), ids)
    return table


def _upgrade(table: pa.Table) -> pa.Table:
    """Stored events as :data:`EVENT_SCHEMA`: a nullable column added since the segment was
    written (``recommendation_id``) is null."""
    for field in EVENT_SCHEMA:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(EVENT_SCHEMA.names).cast(EVENT_SCHEMA)


def _plan(segments: list[Segment], rows: list[int], target: int) -> list[list[Segment]]:
    """Runs of adjacent small segments to merge, each at most ``target`` rows."""
    groups: list[list[Segment]] = []
    current: list[Segment] = []
    total = 0
    for segment, count in zip(segments, rows, strict=True):
        if count >= target or total + count > target:
            if len(current) > 1:
                groups.append(current)
            current, total = ([], 0) if count >= target else ([segment], count)
            continue
        current.append(segment)
        total += count
    if len(current) > 1:
        groups.append(current)
    return groups


def _window(start: datetime | None, end: datetime | None) -> tuple[str, list[datetime]]:
    clauses, params = [], []
    for bound, op in ((start, ">="), (end, "<")):
        if bound is not None:
            clauses.append(f"timestamp {op} ?::TIMESTAMPTZ")
            params.append(bound if bound.tzinfo else bound.replace(tzinfo=UTC))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _iso(microseconds: int | None) -> str | None:
    if microseconds is None:
        return None
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=microseconds)
    return when.isoformat().replace("+00:00", "Z")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
