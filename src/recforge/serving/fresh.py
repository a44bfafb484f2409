"""Fresh events: what users did after the served model's data ends, kept for fold-in.

Events posted to ``POST /v1/events`` are durable in the event store, but the model only learns
them at its next training. Until then, the newest ``fresh_events_per_user`` events of each user
whose timestamp is after the model's data cutoff are kept here, and that user's
recommendations are folded in from them (:mod:`recforge.serving.answers`).

An event is kept as ``(event_id, item_id, r, timestamp_us)`` with ``r = weight(event_type) *
value`` (the event weights of ``[weighting]``; no time decay: fresh events are newer than
everything the model saw, so their decay factor is close to 1). A repeated ``event_id`` counts
once when read. Two stores:

* :class:`MemoryFreshEvents`: in process memory, bounded per user and in users (the least
  recently updated user is dropped first);
* :class:`RedisFreshEvents`: a Redis list per user (``<prefix>:fresh:<user_id>``), trimmed to
  the newest events, expiring ``fresh_ttl_seconds`` after the last one; shared by every API
  process.

Events that reach the event store another way (``recforge ingest kafka``) reach a Redis store
through :class:`FreshFeed`, with the cutoff of the version published at the time.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from recforge._validation import check_positive_int
from recforge.artifacts import ModelRegistry
from recforge.lists import translate_errors
from recforge.serving.model import NO_CUTOFF, data_cutoff_us
from recforge.weighting import Weighting

__all__ = ["FreshEvent", "FreshEvents", "FreshFeed", "MemoryFreshEvents", "RedisFreshEvents", "fresh_rows"]


class FreshEvent(NamedTuple):
    event_id: str
    item_id: str
    r: float
    timestamp_us: int


class FreshEvents(ABC):
    """Recent events per user, newer than a cutoff."""

    @abstractmethod
    def add(self, events: pa.Table, weighting: Weighting, cutoff_us: int) -> int:
        """Keep the events (validated, :data:`~recforge.data.schema.EVENT_SCHEMA`) newer than
        ``cutoff_us``; returns how many were newer."""

    @abstractmethod
    def get(self, user_id: str, cutoff_us: int) -> list[FreshEvent]:
        """The user's kept events newer than ``cutoff_us``, oldest first."""

    @abstractmethod
    def erase(self, user_id: str, covers: Callable[[FreshEvent], bool]) -> int:
        """Remove the user's kept events that ``covers`` (a deletion) picks; returns how many."""

    def users(self) -> int | None:
        """Users with kept events, where the store can tell cheaply."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def fresh_rows(
    events: pa.Table, weighting: Weighting, cutoff_us: int
) -> Iterator[tuple[str, list[FreshEvent]]]:
    """The events newer than ``cutoff_us`` grouped by user (in time order within a user).
    Filtering, weights, sorting and finding each user's run are vectorised; Python builds one
    tuple per kept event and loops over users, not events."""
    ts = events.column("timestamp").cast(pa.int64())
    events = events.filter(pc.greater(ts, pa.scalar(cutoff_us, pa.int64())))
    n = events.num_rows
    if not n:
        return
    types = pc.dictionary_encode(events.column("event_type")).combine_chunks()
    r = weighting.type_weights(types.indices.to_numpy(zero_copy_only=False), types.dictionary.to_pylist())
    r *= np.asarray(events.column("value").to_numpy(), dtype=np.float64)
    ts_us = np.asarray(events.column("timestamp").cast(pa.int64()).to_numpy(), dtype=np.int64)
    users = pc.dictionary_encode(events.column("user_id")).combine_chunks()
    user_codes = np.asarray(users.indices.to_numpy(), dtype=np.int64)
    order = np.lexsort((ts_us, user_codes))
    take = pa.array(order)
    rows = list(
        map(
            FreshEvent._make,
            zip(
                events.column("event_id").take(take).to_pylist(),
                events.column("item_id").take(take).to_pylist(),
                r[order].tolist(),
                ts_us[order].tolist(),
                strict=True,
            ),
        )
    )
    sorted_codes = user_codes[order]
    starts = np.flatnonzero(np.diff(sorted_codes, prepend=-1)).tolist()
    user_names = users.dictionary.to_pylist()
    for start, stop in zip(starts, [*starts[1:], n], strict=True):
        yield user_names[int(sorted_codes[start])], rows[start:stop]


class MemoryFreshEvents(FreshEvents):
    """Fresh events in process memory: ``per_user`` newest per user, ``max_users`` users."""

    def __init__(self, per_user: int, max_users: int) -> None:
        check_positive_int("per_user", per_user)
        check_positive_int("max_users", max_users)
        self.per_user = per_user
        self.max_users = max_users
        self._users: OrderedDict[str, list[FreshEvent]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, events: pa.Table, weighting: Weighting, cutoff_us: int) -> int:
        kept = 0
        keep = self.per_user
        users = self._users
        with self._lock:
            for user, rows in fresh_rows(events, weighting, cutoff_us):
                kept += len(rows)
                queue = users.get(user)
                if queue is None:
                    users[user] = rows[-keep:]
                    continue
                users.move_to_end(user)
                queue.extend(rows)
                if len(queue) > keep:
                    del queue[:-keep]
            while len(users) > self.max_users:
                users.popitem(last=False)
        return kept

    def get(self, user_id: str, cutoff_us: int) -> list[FreshEvent]:
        with self._lock:
            queue = self._users.get(user_id)
            if not queue:
                return []
            queue = list(queue)
        return _distinct_newer(queue, cutoff_us)

    def erase(self, user_id: str, covers: Callable[[FreshEvent], bool]) -> int:
        with self._lock:
            queue = self._users.get(user_id)
            if not queue:
                return 0
            kept = [event for event in queue if not covers(event)]
            if kept:
                self._users[user_id] = kept
            else:
                del self._users[user_id]
            return len(queue) - len(kept)

    def users(self) -> int:
        return len(self._users)


def _distinct_newer(events: list[FreshEvent], cutoff_us: int) -> list[FreshEvent]:
    """The events newer than the cutoff, each ``event_id`` once (a reposted event is kept
    again by ``add``; it counts once here)."""
    seen: set[str] = set()
    out = []
    for event in events:
        if event.timestamp_us <= cutoff_us or event.event_id in seen:
            continue
        seen.add(event.event_id)
        out.append(event)
    return out


class RedisFreshEvents(FreshEvents):
    """Fresh events in Redis lists, one per user, shared by several API processes."""

    def __init__(self, client: Any, url: str, prefix: str, per_user: int, ttl_seconds: int) -> None:
        check_positive_int("per_user", per_user)
        check_positive_int("ttl_seconds", ttl_seconds)
        self.client = client
        self.url = url
        self.prefix = prefix
        self.per_user = per_user
        self.ttl_seconds = ttl_seconds

    def _key(self, user_id: str) -> str:
        return f"{self.prefix}:fresh:{user_id}"

    def add(self, events: pa.Table, weighting: Weighting, cutoff_us: int) -> int:
        kept = 0
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for user, rows in fresh_rows(events, weighting, cutoff_us):
                key = self._key(user)
                pipe.rpush(key, *(orjson.dumps(tuple(e)) for e in rows))
                pipe.ltrim(key, -self.per_user, -1)
                pipe.expire(key, self.ttl_seconds)
                kept += len(rows)
            if kept:
                pipe.execute()
        return kept

    def get(self, user_id: str, cutoff_us: int) -> list[FreshEvent]:
        with translate_errors(self.url):
            raw = self.client.lrange(self._key(user_id), 0, -1)
        if not raw:
            return []
        return _distinct_newer([FreshEvent(*orjson.loads(blob)) for blob in raw], cutoff_us)

    def erase(self, user_id: str, covers: Callable[[FreshEvent], bool]) -> int:
        """Rewrite the user's list without the covered events, in a transaction that is retried
        when another process appended meanwhile (``WATCH``)."""
        key = self._key(user_id)
        removed = [0]

        def rewrite(pipe: Any) -> None:
            raw = pipe.lrange(key, 0, -1)
            kept = [blob for blob in raw if not covers(FreshEvent(*orjson.loads(blob)))]
            removed[0] = len(raw) - len(kept)
            pipe.multi()
            if removed[0]:
                pipe.delete(key)
                if kept:
                    pipe.rpush(key, *kept)
                    pipe.expire(key, self.ttl_seconds)

        with translate_errors(self.url):
            self.client.transaction(rewrite, key)
        return removed[0]

    def close(self) -> None:
        self.client.close()


class FreshFeed:
    """Passes stored events on to a fresh-event store: those newer than the data of the version
    published now (re-read at most every ``recheck_s`` seconds), weighted by ``weighting``."""

    def __init__(
        self, fresh: FreshEvents, weighting: Weighting, registry: ModelRegistry, recheck_s: float = 1.0
    ) -> None:
        self.fresh = fresh
        self.weighting = weighting
        self.registry = registry
        self.recheck_s = recheck_s
        self._cutoff = (NO_CUTOFF, -float("inf"))

    def cutoff_us(self) -> int:
        value, read_at = self._cutoff
        now = time.monotonic()
        if now - read_at >= self.recheck_s:
            name = self.registry.current()
            value = NO_CUTOFF if name is None else data_cutoff_us(self.registry.get(name).manifest)
            self._cutoff = (value, now)
        return value

    def __call__(self, events: pa.Table) -> None:
        self.fresh.add(events, self.weighting, self.cutoff_us())
