"""List stores: where a server looks up a model version's precomputed lists.

Two implementations of one interface (:class:`ListStore`):

* :class:`MmapListStore` (the default) reads the artifact's arrays through ``mmap``: a lookup is
  a row view of ``users.ids``/``users.scores`` (``O(1)``, no copy), and the operating system's
  page cache is shared by every API process on the machine.
* :class:`RedisListStore` reads the same rows from Redis, where :class:`RedisLists` loaded them
  (by ``recforge models load``, at ``recforge models publish --store redis://...``, or by the
  first server that needs a version): several API processes, on several machines, share one
  copy. Keys (``<p>`` is ``serving.redis_prefix``)::

      <p>:lists:<version>:users    hash  user id -> int32 item indices [k] + float32 scores [k]
      <p>:lists:<version>:items    hash  item id -> the same, similar items
      <p>:lists:<version>:popular  string, the popular list, same encoding
      <p>:lists:<version>:ready    string, set last: the version is complete
      <p>:lists:<version>:loading  string with a TTL: one loader at a time
      <p>:lists                    sorted set of loaded versions by load time

  Item indices are the version's dense indices; every API process has the version's model
  (it folds in fresh events), and with it the item vocabulary that names them.
"""

from __future__ import annotations

import contextlib
import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from recforge.artifacts import Artifact
from recforge.errors import RecforgeError

__all__ = [
    "ListStore",
    "MmapListStore",
    "RedisListStore",
    "RedisLists",
    "StoreUnavailable",
    "decode_list",
    "encode_list",
    "encode_rows",
]

Pair = tuple[np.ndarray, np.ndarray]


class StoreUnavailable(RecforgeError):
    """The list store or fresh-event store cannot be reached (answered as 503)."""


class ListStore(ABC):
    """The precomputed lists of one model version. Rows are item indices, best first, padded
    with ``-1``; lookups of a user or item the version does not know are not made."""

    version: str

    @abstractmethod
    def user(self, index: int, user_id: str) -> Pair | None:
        """The user's top-K ``(ids, scores)``; ``None`` when the store has no list for them."""

    @abstractmethod
    def item(self, index: int, item_id: str) -> Pair | None:
        """The item's similar items ``(ids, scores)``; ``None`` when the store has none."""

    @abstractmethod
    def popular(self) -> Pair:
        """The popular fallback list."""


class MmapListStore(ListStore):
    """Row views of an artifact's memory-mapped arrays."""

    def __init__(self, artifact: Artifact) -> None:
        self.version = artifact.version
        # plain ndarray views of the mapped files (no copy): slicing a np.memmap subclass
        # costs microseconds of bookkeeping per row that a lookup does not need
        self._user_ids, self._user_scores = np.asarray(artifact.user_ids), np.asarray(artifact.user_scores)
        self._item_ids, self._item_scores = np.asarray(artifact.item_ids), np.asarray(artifact.item_scores)
        self._popular = (np.asarray(artifact.popular_ids), np.asarray(artifact.popular_scores))

    def user(self, index: int, user_id: str) -> Pair | None:
        return self._user_ids[index], self._user_scores[index]

    def item(self, index: int, item_id: str) -> Pair | None:
        return self._item_ids[index], self._item_scores[index]

    def popular(self) -> Pair:
        return self._popular


def encode_list(ids: np.ndarray, scores: np.ndarray) -> bytes:
    """``int32 ids[k]`` then ``float32 scores[k]``, little-endian."""
    return np.asarray(ids, "<i4").tobytes() + np.asarray(scores, "<f4").tobytes()


def decode_list(blob: bytes) -> Pair:
    k = len(blob) // 8
    return np.frombuffer(blob, "<i4", count=k), np.frombuffer(blob, "<f4", count=k, offset=4 * k)


def encode_rows(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """All rows encoded at once: ``[n, 8k]`` bytes, row ``r`` is ``encode_list(ids[r], scores[r])``."""
    n, k = ids.shape
    out = np.empty((n, 8 * k), dtype=np.uint8)
    out[:, : 4 * k] = np.ascontiguousarray(ids, "<i4").view(np.uint8).reshape(n, 4 * k)
    out[:, 4 * k :] = np.ascontiguousarray(scores, "<f4").view(np.uint8).reshape(n, 4 * k)
    return out


class RedisLists:
    """The lists of several model versions in one Redis database (see the module docstring)."""

    def __init__(
        self, url: str, prefix: str = "recforge", keep_versions: int = 3, client: Any = None
    ) -> None:
        if keep_versions < 1:
            raise ValueError(f"keep_versions must be >= 1, got {keep_versions}")
        self.url = url
        self.prefix = prefix
        self.keep_versions = keep_versions
        self.client = client if client is not None else redis_client(url)

    def key(self, version: str, part: str) -> str:
        """The Redis key of ``part`` (``users``, ``items``, ``popular``, ``ready``) of a version."""
        return f"{self.prefix}:lists:{version}:{part}"

    def ready(self, version: str) -> bool:
        """Whether ``version`` is completely loaded."""
        with translate_errors(self.url):
            return bool(self.client.exists(self.key(version, "ready")))

    def versions(self) -> list[str]:
        """Loaded (or loading) versions, oldest first."""
        with translate_errors(self.url):
            return [v.decode() for v in self.client.zrange(f"{self.prefix}:lists", 0, -1)]

    def load(self, artifact: Artifact, *, batch: int = 2_000, force: bool = False) -> bool:
        """Copy an artifact's lists into Redis unless they are there; returns whether it loaded.

        The ``ready`` key is written last, so a reader never uses a half-loaded version; a
        loader killed half-way leaves keys that the next load overwrites.
        """
        version = artifact.version
        if not force and self.ready(version):
            return False
        model = artifact.model
        with translate_errors(self.url):
            client = self.client
            client.zadd(f"{self.prefix}:lists", {version: time.time()})
            for part, names, ids, scores in (
                ("users", model.users_, artifact.user_ids, artifact.user_scores),
                ("items", model.items_, artifact.item_ids, artifact.item_scores),
            ):
                key = self.key(version, part)
                client.delete(key)
                for start in range(0, len(names), batch):
                    stop = min(start + batch, len(names))
                    rows = encode_rows(ids[start:stop], scores[start:stop])
                    keys = names.array.slice(start, stop - start).to_pylist()
                    client.hset(
                        key, mapping={name: row.tobytes() for name, row in zip(keys, rows, strict=True)}
                    )
            client.set(
                self.key(version, "popular"), encode_list(artifact.popular_ids, artifact.popular_scores)
            )
            client.set(self.key(version, "ready"), str(time.time()))
        self.prune(keep=version)
        return True

    def ensure(self, artifact: Artifact, *, wait_seconds: float = 600.0, lock_seconds: int = 600) -> None:
        """Make sure ``artifact``'s lists are loaded: load them, or wait for the process that is."""
        version = artifact.version
        deadline = time.monotonic() + wait_seconds
        while not self.ready(version):
            with translate_errors(self.url):
                mine = self.client.set(self.key(version, "loading"), "1", nx=True, ex=lock_seconds)
            if mine:
                try:
                    self.load(artifact, force=True)
                finally:
                    with translate_errors(self.url):
                        self.client.delete(self.key(version, "loading"))
                return
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"timed out waiting for another process to load {version} into Redis")
            time.sleep(0.2)

    def prune(self, keep: str | None = None) -> list[str]:
        """Delete all but the newest ``keep_versions`` versions (never ``keep``)."""
        versions = self.versions()
        doomed = [v for v in versions[: -self.keep_versions] if v != keep]
        with translate_errors(self.url):
            for version in doomed:
                self.client.delete(*(self.key(version, p) for p in ("ready", "users", "items", "popular")))
                self.client.zrem(f"{self.prefix}:lists", version)
        return doomed

    def open(self, artifact: Artifact) -> RedisListStore:
        """A list store over ``artifact``'s version, loading it first when needed."""
        self.ensure(artifact)
        return RedisListStore(self, artifact.version)


class RedisListStore(ListStore):
    """One version's lists in Redis: one ``HGET`` per lookup; the popular list read once."""

    def __init__(self, lists: RedisLists, version: str) -> None:
        self.version = version
        self._lists = lists
        self._client = lists.client
        self._users = lists.key(version, "users")
        self._items = lists.key(version, "items")
        with translate_errors(lists.url):
            blob = self._client.get(lists.key(version, "popular"))
        if blob is None:
            raise StoreUnavailable(f"Redis holds no popular list for {version}")
        self._popular = decode_list(blob)

    def user(self, index: int, user_id: str) -> Pair | None:
        with translate_errors(self._lists.url):
            blob = self._client.hget(self._users, user_id)
        return None if blob is None else decode_list(blob)

    def item(self, index: int, item_id: str) -> Pair | None:
        with translate_errors(self._lists.url):
            blob = self._client.hget(self._items, item_id)
        return None if blob is None else decode_list(blob)

    def popular(self) -> Pair:
        return self._popular


def redis_client(url: str) -> Any:
    """A Redis client for ``url`` (imported lazily: ``pip install recforge[redis]``)."""
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is part of the dev environment
        raise RecforgeError(
            "the Redis store needs the redis package: pip install 'recforge[redis]'"
        ) from None
    try:
        return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)
    except ValueError as error:
        raise RecforgeError(f"bad Redis URL {safe_url(url)!r}: {error}") from None


@contextlib.contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turn Redis client errors into :class:`StoreUnavailable` naming the server (not the
    password: only the scheme, host, port and database of the URL are shown)."""
    try:
        yield
    except Exception as error:
        if isinstance(error, _redis_errors()):
            raise StoreUnavailable(f"Redis at {safe_url(url)} failed: {error}") from None
        raise


@functools.cache
def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        import redis
    except ImportError:  # pragma: no cover
        return ()
    return (redis.RedisError,)


def safe_url(url: str) -> str:
    """``url`` without user and password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
