"""The catalog store: every item's current record in ``<home>/catalog/catalog.sqlite``.

SQLite, embedded and transactional: an upsert of any number of items is one transaction,
durable when it returns (write-ahead log, ``synchronous=FULL``: the log is fsync'd at commit)
and all-or-nothing if the process dies half-way. Several processes may read and write at once
(the API workers, ``recforge items ingest``, the Kafka consumer); writers queue for the lock.

Tables::

    items(item_id PRIMARY KEY, categories JSON array, available 0/1, created_at microseconds,
          attributes JSON object, seq)
    meta(key, value)                         "seq": the last change number given out
    offsets(topic, partition, next_offset)   Kafka positions stored with the items they brought

**Changes.** Every upsert gives its items the next change numbers (``seq``, in input order,
under the write lock), so :meth:`CatalogStore.changes` returns, in order, every item changed
after a number: a serving process keeps its view exact by asking for what changed since the
last number it applied (:mod:`recforge.serving.live_catalog`). A reader never misses a change:
numbers are given out inside the writing transaction, so a transaction with larger numbers
cannot commit before one with smaller ones.

**Upserts** (:meth:`CatalogStore.upsert`) change only the fields a patch has; its attributes
are merged key by key (``null`` deletes a key). With ``replace=True`` (``PUT``) a patch is the
whole record: fields it lacks take their defaults (no categories, available, no attributes;
``created_at`` keeps its first value). A new item's ``created_at`` defaults to the time of its
first upsert.

**Exactly once from Kafka.** :meth:`CatalogStore.upsert` takes the next offsets of the
partitions a batch came from and stores them in the same transaction; the consumer starts from
them (:mod:`recforge.catalog.kafka`), so a batch is applied once however often a consumer dies.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from recforge.catalog.record import ItemPatch
from recforge.errors import RecforgeError

__all__ = ["CatalogStore", "ItemRow", "KafkaPositions", "UpsertResult", "iso_time"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    categories TEXT NOT NULL,
    available INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    attributes TEXT NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_by_seq ON items(seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""
_MERGE = """
INSERT INTO items (item_id, categories, available, created_at, attributes, seq)
VALUES (?1, coalesce(?2, '[]'), coalesce(?3, 1), coalesce(?4, ?7), json_patch('{}', coalesce(?5, '{}')), ?6)
ON CONFLICT (item_id) DO UPDATE SET
    categories = coalesce(?2, categories),
    available = coalesce(?3, available),
    created_at = coalesce(?4, created_at),
    attributes = CASE WHEN ?5 IS NULL THEN attributes ELSE json_patch(attributes, ?5) END,
    seq = ?6
"""
_REPLACE = """
INSERT INTO items (item_id, categories, available, created_at, attributes, seq)
VALUES (?1, coalesce(?2, '[]'), coalesce(?3, 1), coalesce(?4, ?7), json_patch('{}', coalesce(?5, '{}')), ?6)
ON CONFLICT (item_id) DO UPDATE SET
    categories = excluded.categories,
    available = excluded.available,
    created_at = coalesce(?4, created_at),
    attributes = excluded.attributes,
    seq = ?6
"""
_SAVE_OFFSET = """
INSERT INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?)
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)
"""
_COLUMNS = "item_id, categories, available, created_at, attributes, seq"
#: Ids per ``IN (...)`` query (SQLite's default limit on variables is 32,766).
_IDS_PER_QUERY = 10_000


@dataclass(frozen=True)
class ItemRow:
    """One stored item; ``categories`` and ``attributes`` are JSON text as stored."""

    item_id: str
    categories: str
    available: bool
    created_at_us: int
    attributes: str
    seq: int

    def to_dict(self) -> dict[str, Any]:
        """The record as the API shows it (``created_at`` as ISO 8601 UTC)."""
        return {
            "item_id": self.item_id,
            "categories": orjson.loads(self.categories),
            "available": self.available,
            "created_at": iso_time(self.created_at_us),
            "attributes": orjson.loads(self.attributes),
        }


@dataclass(frozen=True)
class KafkaPositions:
    """Where a batch of patches came from: ``partitions[j]`` / ``offsets[j]`` of patch ``j`` of
    ``topic``, and ``ends``, the next offset per partition of the whole batch (messages that gave
    no patch, quarantined, count too)."""

    topic: str
    partitions: Sequence[int]
    offsets: Sequence[int]
    ends: Mapping[int, int]


@dataclass(frozen=True)
class UpsertResult:
    """What an upsert did: ``items`` records applied (``new`` of them new items), the change
    numbers they got (``first_seq..last_seq``), and ``skipped`` Kafka messages already applied."""

    items: int
    new: int
    first_seq: int
    last_seq: int
    skipped: int = 0


class CatalogStore:
    """The catalog under ``<home>/catalog/``; safe to use from several threads and processes."""

    def __init__(self, home: str | Path, *, timeout_s: float = 30.0) -> None:
        self.home = Path(home)
        self.path = self.home / "catalog" / "catalog.sqlite"
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._ready = False

    def __repr__(self) -> str:
        return f"CatalogStore({str(self.home)!r})"

    @property
    def exists(self) -> bool:
        """Whether anything was ever stored here."""
        return self.path.exists()

    # connections ----------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        """This thread's connection (SQLite connections are not shared between threads)."""
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            if not self._ready:
                con.executescript(_SCHEMA)
                self._ready = True
            self._local.con = con
        return con

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        con = self._connection()
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise RecforgeError(f"the catalog store {self.path} is busy or unavailable: {error}") from None
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # writing --------------------------------------------------------------------------------
    def upsert(
        self,
        patches: Sequence[ItemPatch],
        *,
        replace: bool = False,
        offsets: KafkaPositions | None = None,
    ) -> UpsertResult:
        """Apply ``patches`` in order, as one durable transaction (see the module doc).

        ``offsets``: the Kafka position of each patch; patches below the stored next offset of
        their partition are skipped (already applied), and the batch's next offsets are stored
        with the items."""
        now = time.time_ns() // 1000
        with self._write() as con:
            skipped = 0
            if offsets is not None:
                patches, skipped = self._unapplied(con, patches, offsets)
            base = _seq(con)
            new = 0
            if patches:
                new = self._count_new(con, [p.item_id for p in patches])
                rows = [
                    (
                        p.item_id,
                        None if p.categories is None else orjson.dumps(list(p.categories)).decode(),
                        None if p.available is None else int(p.available),
                        p.created_at_us,
                        None if p.attributes is None else orjson.dumps(p.attributes).decode(),
                        base + j + 1,
                        now,
                    )
                    for j, p in enumerate(patches)
                ]
                con.executemany(_REPLACE if replace else _MERGE, rows)
                con.execute(
                    "INSERT INTO meta (key, value) VALUES ('seq', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (base + len(patches),),
                )
        return UpsertResult(len(patches), new, base + 1, base + len(patches), skipped)

    def _unapplied(
        self, con: sqlite3.Connection, patches: Sequence[ItemPatch], offsets: KafkaPositions
    ) -> tuple[list[ItemPatch], int]:
        query = "SELECT partition, next_offset FROM offsets WHERE topic = ?"
        stored = dict(con.execute(query, (offsets.topic,)).fetchall())
        keep = [
            patch
            for patch, part, at in zip(patches, offsets.partitions, offsets.offsets, strict=True)
            if at >= stored.get(part, -1)
        ]
        ends = dict(offsets.ends)
        for part, at in zip(offsets.partitions, offsets.offsets, strict=True):
            ends[part] = max(ends.get(part, -1), at + 1)
        con.executemany(_SAVE_OFFSET, [(offsets.topic, part, end) for part, end in ends.items()])
        return keep, len(patches) - len(keep)

    @staticmethod
    def _count_new(con: sqlite3.Connection, ids: list[str]) -> int:
        distinct = list(dict.fromkeys(ids))
        known = 0
        for start in range(0, len(distinct), _IDS_PER_QUERY):
            part = distinct[start : start + _IDS_PER_QUERY]
            marks = ",".join("?" * len(part))
            known += con.execute(f"SELECT count(*) FROM items WHERE item_id IN ({marks})", part).fetchone()[0]
        return len(distinct) - known

    # reading --------------------------------------------------------------------------------
    def seq(self) -> int:
        """The last change number given out (0 for an empty store)."""
        if not self.exists:
            return 0
        return _seq(self._connection())

    def offsets(self, topic: str) -> dict[int, int]:
        """The next offset to apply per partition of ``topic``."""
        if not self.exists:
            return {}
        rows = self._connection().execute(
            "SELECT partition, next_offset FROM offsets WHERE topic = ?", (topic,)
        )
        return {int(p): int(o) for p, o in rows}

    def get(self, item_id: str) -> ItemRow | None:
        if not self.exists:
            return None
        row = self._connection().execute(f"SELECT {_COLUMNS} FROM items WHERE item_id = ?", (item_id,))
        found = row.fetchone()
        return None if found is None else _row(found)

    def rows(self, since: int = 0, limit: int | None = None) -> tuple[list[ItemRow], int]:
        """Items changed after change number ``since``, in change order (at most ``limit``), and
        the change number to ask from next. ``since=0`` reads the whole catalog."""
        if not self.exists:
            return [], since
        con = self._connection()
        sql = f"SELECT {_COLUMNS} FROM items WHERE seq > ? ORDER BY seq"
        found = con.execute(sql + (f" LIMIT {int(limit)}" if limit else ""), (since,)).fetchall()
        rows = [_row(r) for r in found]
        return rows, (rows[-1].seq if rows else since)

    def iter_rows(self, batch: int = 100_000) -> Iterable[ItemRow]:
        """Every item, in change order, ``batch`` at a time."""
        since = 0
        while True:
            rows, since = self.rows(since, batch)
            if not rows:
                return
            yield from rows

    def stats(self) -> dict[str, Any]:
        """``{"items", "available", "categories": {name: items}}`` (categories by name)."""
        if not self.exists:
            return {"items": 0, "available": 0, "categories": {}}
        con = self._connection()
        items, available = con.execute("SELECT count(*), coalesce(sum(available), 0) FROM items").fetchone()
        categories = con.execute(
            "SELECT c.value, count(*) FROM items, json_each(items.categories) AS c GROUP BY 1 ORDER BY 1"
        ).fetchall()
        return {
            "items": int(items),
            "available": int(available),
            "categories": {str(name): int(count) for name, count in categories},
        }


def iso_time(us: int) -> str:
    """ISO 8601 UTC of microseconds since the epoch (before 1970 too)."""
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    return when.isoformat().replace("+00:00", "Z")


def _seq(con: sqlite3.Connection) -> int:
    row = con.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
    return int(row[0]) if row else 0


def _row(found: tuple[Any, ...]) -> ItemRow:
    return ItemRow(found[0], found[1], bool(found[2]), int(found[3]), found[4], int(found[5]))
