"""The event store, digested for the dashboard: aggregates and look-ups that never rescan it.

A page must not read 20M events. The store's segments are immutable and every event belongs to
one commit sequence number forever (compaction regroups sequences into other files, never
changes their events), so a digest of a *range of sequence numbers* stays true for good. The
digest is a few *parts*, each covering the sequences ``first..last`` of whole live segments,
under ``<home>/dashboard/digest/part-<first>-<last>/``:

``hourly.parquet``
    events per hour and event type (hours since the epoch, UTC);
``items.parquet``
    events per item, day and event type, sorted by item (row groups of :data:`ITEM_GROUP`
    rows): an item's popularity over time is a read of one or two row groups;
``users.parquet``
    the events themselves (user, item, type, value, time) sorted by user and time (row groups
    of :data:`USER_GROUP` rows): a user's history is a read of one or two row groups per part.

:meth:`EventDigest.refresh` brings the parts in line with the live segments: a part whose
range no longer starts and ends on live segment boundaries (a compaction merged across it) is
dropped; segments no part covers get new parts, one per segment of at least
:data:`SMALL_ROWS` rows and one per run of smaller ones; runs of small parts are merged once
there are more than :data:`MAX_SMALL_PARTS` of them (the server's group commit writes many
small segments). Each part is written into a temporary directory and renamed into place, so a
reader or a crash never sees half a part. Work per refresh is proportional to the new events,
and memory to one part (at most a segment, or :data:`SMALL_ROWS` rows).

Reading is cheap and never waits for a refresh: the parts in use are swapped in one
assignment, and per-part totals (hourly counts) are summed once per set of parts.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import itertools
import logging
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recforge._files import commit_dir, temporary_dir, write_json_atomic
from recforge.data.store import EventStore, Segment

__all__ = ["EventDigest", "Hourly", "ItemDays", "UserEvents"]

log = logging.getLogger("recforge.dashboard")

#: A segment of at least this many rows gets a part of its own; smaller ones are grouped.
SMALL_ROWS = 500_000
#: Small parts are merged once there are more of them than this.
MAX_SMALL_PARTS = 4
#: A temporary part directory this old (seconds) belongs to a writer that died.
STALE_SECONDS = 3600
#: Rows per row group of the sorted look-up tables.
USER_GROUP = 16_384
ITEM_GROUP = 16_384
_PART = re.compile(r"^part-(\d{10})-(\d{10})$")
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class Hourly:
    """Events per hour (``hours``: hours since the epoch, ascending) and type (``counts[type]``
    aligned with ``hours``), and their totals."""

    hours: np.ndarray
    counts: dict[str, np.ndarray]
    events: int
    first_us: int | None
    last_us: int | None

    @property
    def by_type(self) -> dict[str, int]:
        return {name: int(values.sum()) for name, values in self.counts.items()}


@dataclass(frozen=True)
class ItemDays:
    """An item's events per day (``days``: days since the epoch) and type."""

    days: np.ndarray
    counts: dict[str, np.ndarray]

    @property
    def events(self) -> int:
        return int(sum(int(v.sum()) for v in self.counts.values()))


@dataclass(frozen=True)
class UserEvents:
    """A user's newest events (``table``: item_id, event_type, value, timestamp; newest first)
    and how many they have in all."""

    table: pa.Table
    total: int


class _Part:
    """One part on disk, opened: its hourly totals in memory, its look-up tables' row-group
    bounds in memory, the files opened once."""

    def __init__(self, path: Path) -> None:
        match = _PART.match(path.name)
        assert match is not None
        self.path = path
        self.first, self.last = int(match[1]), int(match[2])
        hourly = pq.read_table(path / "hourly.parquet")
        self.hourly = hourly
        self.rows = int(pc.sum(hourly.column("events")).as_py() or 0)
        self.users = pq.ParquetFile(path / "users.parquet")
        self.items = pq.ParquetFile(path / "items.parquet")
        self.user_bounds = _bounds(self.users, "user_id")
        self.item_bounds = _bounds(self.items, "item_id")

    def groups(self, bounds: tuple[list[str], list[str]], key: str) -> list[int]:
        """Row groups whose ``[min, max]`` holds ``key`` (sorted tables: a contiguous run)."""
        lows, highs = bounds
        start = bisect.bisect_left(highs, key)
        stop = bisect.bisect_right(lows, key)
        return list(range(start, stop))


def _bounds(file: pq.ParquetFile, column: str) -> tuple[list[str], list[str]]:
    """Per row group, the min and max of ``column`` (the writer's statistics)."""
    index = file.schema_arrow.get_field_index(column)
    lows, highs = [], []
    for g in range(file.num_row_groups):
        stats = file.metadata.row_group(g).column(index).statistics
        lows.append(str(stats.min))
        highs.append(str(stats.max))
    return lows, highs


class EventDigest:
    """The digest of one home's event store (see the module docstring)."""

    def __init__(self, home: str | Path, root: str | Path | None = None) -> None:
        self.store = EventStore(home)
        self.root = Path(root) if root is not None else Path(home) / "dashboard" / "digest"
        self._parts: list[_Part] = []
        self._hourly: Hourly | None = None
        self._refresh_lock = threading.Lock()
        self.pending = 0  #: live segments not yet digested (as of the last refresh)
        self.error: str | None = None

    # reading --------------------------------------------------------------------------------
    @property
    def parts(self) -> list[_Part]:
        return self._parts

    def hourly(self) -> Hourly:
        """Events per hour and type over every digested event (summed once per set of parts)."""
        cached = self._hourly
        if cached is not None:
            return cached
        parts = self._parts
        tables = [p.hourly for p in parts if p.hourly.num_rows]
        if not tables:
            result = Hourly(np.zeros(0, np.int64), {}, 0, None, None)
        else:
            table = pa.concat_tables(tables)
            hours = table.column("hour").to_numpy()
            types = table.column("event_type").to_pylist()
            counts = table.column("events").to_numpy()
            axis, where = np.unique(hours, return_inverse=True)
            per_type: dict[str, np.ndarray] = {}
            names = np.asarray(types, dtype=object)
            for name in sorted(set(types)):
                mask = names == name
                per_type[name] = np.bincount(where[mask], weights=counts[mask], minlength=len(axis)).astype(
                    np.int64
                )
            first = min(int(pc.min(p.hourly.column("first_us")).as_py()) for p in parts if p.hourly.num_rows)
            last = max(int(pc.max(p.hourly.column("last_us")).as_py()) for p in parts if p.hourly.num_rows)
            result = Hourly(axis, per_type, int(counts.sum()), first, last)
        if parts is self._parts:
            self._hourly = result
        return result

    def user_events(self, user_id: str, limit: int = 100) -> UserEvents:
        """The user's newest ``limit`` events, newest first, and their total count."""
        tables = []
        for part in self._parts:
            groups = part.groups(part.user_bounds, user_id)
            if not groups:
                continue
            table = part.users.read_row_groups(groups)
            tables.append(table.filter(pc.equal(table.column("user_id"), user_id)))
        if not tables:
            return UserEvents(_USER_SCHEMA.empty_table(), 0)
        table = pa.concat_tables(tables).drop_columns(["user_id"])
        total = table.num_rows
        order = pc.sort_indices(table, [("timestamp", "descending")])[:limit]
        return UserEvents(table.take(order), total)

    def item_days(self, item_id: str) -> ItemDays:
        """The item's events per day and type."""
        tables = []
        for part in self._parts:
            groups = part.groups(part.item_bounds, item_id)
            if groups:
                table = part.items.read_row_groups(groups)
                tables.append(table.filter(pc.equal(table.column("item_id"), item_id)))
        if not tables or not sum(t.num_rows for t in tables):
            return ItemDays(np.zeros(0, np.int64), {})
        table = pa.concat_tables(tables)
        days = table.column("day").to_numpy()
        axis, where = np.unique(days, return_inverse=True)
        names = np.asarray(table.column("event_type").to_pylist(), dtype=object)
        counts = table.column("events").to_numpy()
        per_type = {
            name: np.bincount(
                where[names == name], weights=counts[names == name], minlength=len(axis)
            ).astype(np.int64)
            for name in sorted(set(names.tolist()))
        }
        return ItemDays(axis, per_type)

    # refreshing -----------------------------------------------------------------------------
    def refresh(self) -> int:
        """Digest the live segments no part covers (see the module docstring); returns how many
        segments were digested. One refresh at a time; readers are never blocked."""
        with self._refresh_lock:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                with open(self.root / "refresh.lock", "a+b") as lock:
                    # one process digests at a time; the others then find its parts on disk
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                    done = self._refresh()
                self.error = None
                return done
            except Exception as error:  # a page shows it; the next refresh tries again
                self.error = f"{type(error).__name__}: {error}"
                log.exception("could not digest the event store")
                return 0

    def _refresh(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        live = self.store.segments()
        on_disk = {p.name: p for p in self.root.iterdir() if _PART.match(p.name)}
        opened = {p.path.name: p for p in self._parts}
        keep, uncovered = _plan(live, on_disk)
        self.pending = sum(len(run) for run in uncovered)
        done = 0
        for run in uncovered:
            keep.append(self._build(run))
            done += len(run)
            self._publish(keep, opened)
        keep = self._merge_small(sorted(keep), opened)
        self._publish(keep, opened)
        self.pending = 0
        # parts not in use are superseded, unless another process digested segments newer
        # than the ones listed here
        in_use = {p.path.name for p in self._parts}
        known = max((s.last for s in live), default=0)
        for path in self.root.iterdir():
            match = _PART.match(path.name)
            if match and path.name not in in_use and int(match[2]) <= known:
                shutil.rmtree(path, ignore_errors=True)
        for leftover in self.root.glob(".tmp-*"):  # a crashed writer's, not one still writing
            with contextlib.suppress(FileNotFoundError):
                if time.time() - leftover.stat().st_mtime > STALE_SECONDS:
                    shutil.rmtree(leftover, ignore_errors=True)
        return done

    def _publish(self, names: list[str], opened: dict[str, _Part]) -> None:
        parts = []
        for name in sorted(names):
            part = opened.get(name)
            if part is None:
                part = opened[name] = _Part(self.root / name)
            parts.append(part)
        if [p.path.name for p in parts] != [p.path.name for p in self._parts]:
            self._parts = parts
            self._hourly = None

    def _build(self, run: list[Segment]) -> str:
        """Digest the segments of ``run`` into a new part; returns its directory name."""
        name = f"part-{run[0].first:010d}-{run[-1].last:010d}"
        files = [str(s.path) for s in run]
        self._write(name, lambda con: con.sql("SELECT * FROM read_parquet(?)", params=[files]))
        return name

    def _merge_small(self, names: list[str], opened: dict[str, _Part]) -> list[str]:
        """Merge adjacent small parts while there are more than :data:`MAX_SMALL_PARTS`."""

        def rows(name: str) -> int:
            part = opened.get(name) or _Part(self.root / name)
            opened[name] = part
            return part.rows

        while True:
            small = [n for n in names if rows(n) < SMALL_ROWS]
            if len(small) <= MAX_SMALL_PARTS:
                return names
            # the adjacent pair of small parts with the fewest rows together
            index = {n: i for i, n in enumerate(names)}
            pairs = [
                (rows(a) + rows(b), a, b)
                for a, b in itertools.pairwise(names)
                if rows(a) < SMALL_ROWS and rows(b) < SMALL_ROWS and index[b] == index[a] + 1
            ]
            if not pairs:
                return names
            _, a, b = min(pairs)
            merged = f"part-{opened[a].first:010d}-{opened[b].last:010d}"
            sources = [str(self.root / a / "users.parquet"), str(self.root / b / "users.parquet")]
            self._write(
                merged,
                lambda con, s=sources: con.sql(
                    "SELECT user_id, item_id, event_type, value, timestamp FROM read_parquet(?)", params=[s]
                ),
            )
            names = sorted([n for n in names if n not in (a, b)] + [merged])

    def _write(self, name: str, events: Any) -> None:
        """Write part ``name`` from the relation ``events(con)`` (the event columns)."""
        final = self.root / name
        if final.exists():
            return
        tmp = temporary_dir(final)
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET threads = 1")  # beside a server: one core at most
            con.execute("SET enable_progress_bar = false")
            con.execute("SET memory_limit = '1GB'")
            con.execute(f"SET temp_directory = '{tmp}/spill'")
            relation = events(con)
            con.register("events", relation)
            hourly = con.sql(
                f"SELECT epoch_us(timestamp) // {_US_PER_HOUR} AS hour, event_type, count(*) AS events, "
                "min(epoch_us(timestamp)) AS first_us, max(epoch_us(timestamp)) AS last_us "
                "FROM events GROUP BY 1, 2 ORDER BY 1, 2"
            ).to_arrow_table()
            pq.write_table(hourly, tmp / "hourly.parquet")
            items = con.sql(
                f"SELECT item_id, (epoch_us(timestamp) // {_US_PER_DAY})::INTEGER AS day, event_type, "
                "count(*) AS events FROM events GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            ).to_arrow_table()
            pq.write_table(items, tmp / "items.parquet", row_group_size=ITEM_GROUP)
            users = con.sql(
                "SELECT user_id::VARCHAR AS user_id, item_id::VARCHAR AS item_id, "
                "event_type::VARCHAR AS event_type, value, timestamp FROM events ORDER BY user_id, timestamp"
            ).to_arrow_table()
            pq.write_table(users.cast(_USER_SCHEMA), tmp / "users.parquet", row_group_size=USER_GROUP)
            del users
            shutil.rmtree(tmp / "spill", ignore_errors=True)
            write_json_atomic(tmp / "part.json", {"format": 1})
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            con.close()
        commit_dir(tmp, final)


_USER_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("value", pa.float64()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
    ]
)


def _plan(live: list[Segment], on_disk: dict[str, Path]) -> tuple[list[str], list[list[Segment]]]:
    """The parts on disk to keep (each starting and ending on live segment boundaries, the
    longest first, not overlapping), and the runs of live segments no kept part covers, split
    so that a segment of :data:`SMALL_ROWS` rows or more is a run of its own."""
    by_first: dict[int, list[tuple[int, str]]] = {}
    for name in on_disk:
        match = _PART.match(name)
        assert match is not None
        by_first.setdefault(int(match[1]), []).append((int(match[2]), name))
    lasts = {s.last: i for i, s in enumerate(live)}
    keep: list[str] = []
    runs: list[list[Segment]] = []
    current: list[Segment] = []
    current_rows = 0
    i = 0
    while i < len(live):
        segment = live[i]
        candidates = sorted((c for c in by_first.get(segment.first, []) if c[0] in lasts), reverse=True)
        if candidates:
            last, name = candidates[0]
            keep.append(name)
            if current:
                runs.append(current)
                current, current_rows = [], 0
            i = lasts[last] + 1
            continue
        rows = segment.rows
        if rows >= SMALL_ROWS:
            if current:
                runs.append(current)
                current, current_rows = [], 0
            runs.append([segment])
        else:
            if current and current_rows + rows > SMALL_ROWS:
                runs.append(current)
                current, current_rows = [], 0
            current.append(segment)
            current_rows += rows
        i += 1
    if current:
        runs.append(current)
    return keep, runs
