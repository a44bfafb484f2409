"""Erasure: tombstones that hide a user's events from every read at once, until compaction
removes them from disk.

A deletion (``recforge events delete``, ``DELETE /v1/users/{user_id}/events``) appends one
tombstone to ``<home>/events/_tombstones.jsonl``, under a lock, flushed and fsync'd before it is
acknowledged::

    {"id": "…", "user_id": "u7", "item_id": null, "before": "2026-01-01T00:05:00Z",
     "at": "2026-01-01T00:00:00Z", "before_us": …, "at_us": …}

An event is *erased* when its ``user_id`` is the tombstone's, its ``item_id`` is the tombstone's
(any item when ``item_id`` is null) and its timestamp is before ``before``. ``before`` is the time
given (``--before``), at most the deletion time plus ``[data] max_future_seconds``: the latest
stamp an event stored before the deletion can carry (the accepted window allows that much clock
skew), so the whole stored history goes; events the user makes after that are theirs to keep.

Every read of the event store (:meth:`~recforge.data.store.EventStore.scan`, ``stats``, the
builds, Spark's reader) leaves erased events out from the moment the tombstone is written;
``recforge events compact`` rewrites every segment holding erased events without them. The
tombstones themselves are kept (a few bytes each): they still hide re-sent copies of the events
and tell servers which users' precomputed lists to stop serving
(:mod:`recforge.serving.erasure`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge._files import fsync_path
from recforge._time import iso_from_us, to_us
from recforge.data.schema import timestamps_us
from recforge.errors import RecforgeError

__all__ = ["Tombstone", "Tombstones"]

FILE_NAME = "_tombstones.jsonl"


@dataclass(frozen=True)
class Tombstone:
    """One deletion: the events of ``user_id`` (on ``item_id`` only, when given) stamped before
    ``before_us``, deleted at ``at_us`` (microseconds since the epoch)."""

    id: str
    user_id: str
    item_id: str | None
    before_us: int
    at_us: int

    def covers(self, item_id: str, timestamp_us: int) -> bool:
        """Whether this tombstone erases an event of its user on ``item_id`` at that time."""
        return (self.item_id is None or self.item_id == item_id) and timestamp_us < self.before_us

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "before": iso_from_us(self.before_us),
            "at": iso_from_us(self.at_us),
            "before_us": self.before_us,
            "at_us": self.at_us,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Tombstone:
        return cls(
            str(record["id"]),
            str(record["user_id"]),
            None if record.get("item_id") is None else str(record["item_id"]),
            int(record["before_us"]),
            int(record["at_us"]),
        )


class Tombstones:
    """The tombstones of one event store (``<home>/events``). Safe across processes: appends
    are serialised by a lock, and readers re-read the file whenever it changed."""

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root) / FILE_NAME
        self._where = str(self.path)
        self._lock = Path(root) / "_tombstones.lock"
        self._seen: tuple[int, int, int] | None = None
        self._cache: list[Tombstone] = []
        self._by_user: dict[str, tuple[Tombstone, ...]] = {}

    def add(
        self,
        user_id: str,
        item_id: str | None = None,
        before: datetime | None = None,
        *,
        max_future_seconds: float = 0.0,
        now_us: int | None = None,
    ) -> Tombstone:
        """Record a deletion durably (fsync'd when this returns) and return it. ``before``
        defaults to, and is capped at, the deletion time plus ``max_future_seconds``."""
        if not isinstance(user_id, str) or not user_id:
            raise RecforgeError("a deletion needs a user id")
        if item_id is not None and not item_id:
            raise RecforgeError("the item id of a deletion must not be empty")
        at_us = _now_us() if now_us is None else int(now_us)
        latest = at_us + round(max_future_seconds * 1e6)
        before_us = latest if before is None else min(to_us(before), latest)
        stone = Tombstone(secrets.token_hex(8), user_id, item_id, before_us, at_us)
        line = (json.dumps(stone.to_dict(), ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        with _locked(self._lock):
            with self.path.open("ab") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            if created:
                fsync_path(self.path.parent, directory=True)
        return stone

    def read(self) -> list[Tombstone]:
        """Every tombstone, oldest first (re-read only when the file changed). A last line left
        half-written by a crash is not a deletion that was acknowledged, and is skipped."""
        self._refresh()
        return list(self._cache)

    def by_user(self) -> dict[str, tuple[Tombstone, ...]]:
        """The tombstones by user id (not to be modified): one ``stat`` of the file when it has
        not changed, so a server can ask on every request."""
        self._refresh()
        return self._by_user

    def _refresh(self) -> None:
        try:
            info = os.stat(self._where)  # a str: no pathlib conversion on every request
        except FileNotFoundError:
            self._seen, self._cache, self._by_user = None, [], {}
            return
        seen = (info.st_ino, info.st_size, info.st_mtime_ns)
        if seen == self._seen:
            return
        stones = []
        for line in self.path.read_bytes().splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError, RecforgeError):
                stones.append(Tombstone.from_dict(json.loads(line)))
        by_user: dict[str, list[Tombstone]] = {}
        for stone in stones:
            by_user.setdefault(stone.user_id, []).append(stone)
        self._cache, self._by_user = stones, {user: tuple(found) for user, found in by_user.items()}
        self._seen = seen

    def __len__(self) -> int:
        return len(self.read())

    def fingerprint(self) -> str:
        """A short hash of every tombstone: equal while no deletion is added."""
        digest = hashlib.sha256()
        for stone in self.read():
            digest.update(stone.id.encode())
        return digest.hexdigest()[:16]

    def table(self) -> pa.Table:
        """The tombstones as ``user_id``, ``item_id`` (null: every item), ``before_us``."""
        stones = self.read()
        return pa.table(
            {
                "user_id": pa.array([s.user_id for s in stones], pa.large_string()),
                "item_id": pa.array([s.item_id for s in stones], pa.large_string()),
                "before_us": pa.array([s.before_us for s in stones], pa.int64()),
            }
        )

    def erased(self, events: pa.Table) -> np.ndarray:
        """A boolean mask of the rows of ``events`` (``user_id``, ``item_id``, ``timestamp``
        columns) that some tombstone erases. One hash join on ``user_id`` in Arrow, then the
        item and time conditions vectorised over the joined rows."""
        n = events.num_rows
        mask = np.zeros(n, dtype=bool)
        stones = self.table()
        if not n or not stones.num_rows:
            return mask
        rows = pa.table(
            {
                "user_id": events.column("user_id").cast(pa.large_string()),
                "event_item": events.column("item_id").cast(pa.large_string()),
                "event_us": pa.array(timestamps_us(events.column("timestamp")), pa.int64()),
                "row": pa.array(np.arange(n, dtype=np.int64)),
            }
        )
        joined = rows.join(stones, keys="user_id", join_type="inner")
        if not joined.num_rows:
            return mask
        item = joined.column("item_id")
        same_item = pc.or_kleene(pc.is_null(item), pc.equal(item, joined.column("event_item")))
        early = pc.less(joined.column("event_us"), joined.column("before_us"))
        hit = pc.and_(same_item.fill_null(False), early)
        mask[np.asarray(joined.column("row").filter(hit).to_numpy(), dtype=np.int64)] = True
        return mask

    def sql_filter(self, alias: str = "e", table: str = "tombstones") -> str:
        """A DuckDB ``WHERE`` condition that keeps the rows of ``alias`` no tombstone erases,
        given the :meth:`table` registered as ``table`` (an anti-join on ``user_id``)."""
        return (
            f"NOT EXISTS (SELECT 1 FROM {table} t WHERE t.user_id = {alias}.user_id "
            f"AND (t.item_id IS NULL OR t.item_id = {alias}.item_id) "
            f"AND epoch_us({alias}.timestamp) < t.before_us)"
        )


def _now_us() -> int:
    return time.time_ns() // 1000


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
