"""Precomputed lists: what they are, how a model version stores them, how Redis holds them.

Every model version carries three lists, all of item indices in the version's own vocabulary
(padding ``-1``, score ``-inf``), best first:

* ``users``: ``(ids int32 [n_users, k_users], scores float32 [n_users, k_users])``, a user's
  top-K unseen items, by user index;
* ``items``: ``(ids, scores)`` ``[n_items, k_items]``, an item's similar items, by item index;
* ``popular``: ``(ids int32 [k_popular], scores float32 [k_popular])``, the fallback;
* ``categories`` (optional): per category name, ``(ids, scores)`` ``[n_users, k_category]``, a
  user's top unseen items among the category's items (available or not: availability is
  applied when answering), for the largest categories (``[catalog] category_lists``).

**In a version directory** (:func:`save_lists` / :func:`load_lists`), one ``.npy`` per array,
loadable with ``mmap_mode="r"``::

    users.ids.npy  users.scores.npy  items.ids.npy  items.scores.npy  popular.ids.npy  popular.scores.npy
    categories.json  (the category names, in file order)  categories/<j>.ids.npy  categories/<j>.scores.npy

**In Redis** (:class:`RedisLists`; ``<p>`` is ``serving.redis_prefix``), shared by every API
process that serves the version::

    <p>:lists:<version>:users    hash  user id -> encode_list(ids[k], scores[k])
    <p>:lists:<version>:items    hash  item id -> the same, similar items
    <p>:lists:<version>:popular  string, encode_list of the popular list
    <p>:lists:<version>:cat:<name>  hash  user id -> encode_list, a category's list
    <p>:lists:<version>:ready    string, set last: the version is complete
    <p>:lists:<version>:loading  string with a TTL: one loader at a time
    <p>:lists                    sorted set of loaded versions by load time

A list is encoded as ``int32 ids[k]`` then ``float32 scores[k]``, little-endian. The local
loader (:meth:`RedisLists.load`) and Spark's executors (:mod:`recforge.spark.topk`) write the
same keys (:func:`redis_key`; :meth:`RedisLists.begin` first, :meth:`RedisLists.finish` last);
serving reads them (:mod:`recforge.serving.stores`). This module imports nothing above it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np

from recforge._validation import check_positive_int
from recforge.errors import RecforgeError

__all__ = [
    "LIST_FILES",
    "Lists",
    "Pair",
    "RedisLists",
    "StoreUnavailable",
    "decode_list",
    "encode_list",
    "encode_rows",
    "is_redis_url",
    "load_lists",
    "redis_client",
    "redis_key",
    "safe_url",
    "save_lists",
    "translate_errors",
]

Pair = tuple[np.ndarray, np.ndarray]

#: The array files of a version's lists, in the order of :meth:`Lists.arrays`.
LIST_FILES = ("users.ids", "users.scores", "items.ids", "items.scores", "popular.ids", "popular.scores")


@dataclass
class Lists:
    """A version's precomputed ``(ids, scores)`` pairs (see the module doc) and where its
    similar items come from (``factors``, ``cooccurrence`` or ``popular``)."""

    users: Pair
    items: Pair
    popular: Pair
    item_source: str = "factors"
    categories: dict[str, Pair] = field(default_factory=dict)

    @property
    def k_users(self) -> int:
        return int(self.users[0].shape[1])

    @property
    def k_items(self) -> int:
        return int(self.items[0].shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """The six arrays by file name (:data:`LIST_FILES`)."""
        return dict(zip(LIST_FILES, (*self.users, *self.items, *self.popular), strict=True))

    def check(self, n_users: int, n_items: int) -> None:
        """``ValueError`` unless the shapes and dtypes fit a model of ``n_users`` x ``n_items``
        and every id is padding or an item index."""
        rows = {"users": n_users, "items": n_items}
        for name, array in self.arrays().items():
            kind, part = name.split(".")
            if kind in rows and (array.ndim != 2 or array.shape[0] != rows[kind]):
                raise ValueError(f"{name} has shape {array.shape}, expected ({rows[kind]}, k)")
            if kind == "popular" and array.ndim != 1:
                raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
            want = np.int32 if part == "ids" else np.float32
            if array.dtype != want:
                raise ValueError(f"{name} must be {np.dtype(want).name}, got {array.dtype}")
            if part == "ids" and array.size:
                low, high = int(array.min()), int(array.max())
                if low < -1 or high >= n_items:
                    raise ValueError(
                        f"{name} holds item ids from {low} to {high}, outside -1..{n_items - 1} (padding or "
                        f"an index of the {n_items} items)"
                    )
        for name, (ids, scores) in self.categories.items():
            if ids.ndim != 2 or ids.shape[0] != n_users or ids.shape != scores.shape:
                raise ValueError(f"category list {name!r} has shape {ids.shape}, expected ({n_users}, k)")
            if ids.dtype != np.int32 or scores.dtype != np.float32:
                raise ValueError(f"category list {name!r} must be int32 ids and float32 scores")


def save_lists(directory: Path, lists: Lists) -> None:
    """Write the six arrays into ``directory`` (created), no pickle."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in lists.arrays().items():
        np.save(directory / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    if lists.categories:
        (directory / "categories").mkdir(exist_ok=True)
        for j, (ids, scores) in enumerate(lists.categories.values()):
            np.save(directory / "categories" / f"{j}.ids.npy", np.ascontiguousarray(ids), allow_pickle=False)
            np.save(
                directory / "categories" / f"{j}.scores.npy", np.ascontiguousarray(scores), allow_pickle=False
            )
        (directory / "categories.json").write_text(json.dumps(list(lists.categories)))


def load_lists(directory: Path, item_source: str, mmap: bool = True) -> Lists:
    """Read what :func:`save_lists` wrote, arrays memory-mapped unless ``mmap=False``."""
    mode: Literal["r"] | None = "r" if mmap else None
    arrays = [np.load(directory / f"{name}.npy", mmap_mode=mode, allow_pickle=False) for name in LIST_FILES]
    categories: dict[str, Pair] = {}
    names = directory / "categories.json"
    if names.exists():
        for j, name in enumerate(json.loads(names.read_text())):
            categories[name] = (
                np.load(directory / "categories" / f"{j}.ids.npy", mmap_mode=mode, allow_pickle=False),
                np.load(directory / "categories" / f"{j}.scores.npy", mmap_mode=mode, allow_pickle=False),
            )
    return Lists(
        (arrays[0], arrays[1]), (arrays[2], arrays[3]), (arrays[4], arrays[5]), item_source, categories
    )


# encoding ------------------------------------------------------------------------------------
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


# Redis ---------------------------------------------------------------------------------------
class StoreUnavailable(RecforgeError):
    """The list store or fresh-event store cannot be reached (answered as 503)."""


def is_redis_url(store: str) -> bool:
    """Whether a list store setting (``serving.store``) names a Redis list store."""
    return store.startswith(("redis://", "rediss://", "unix://"))


def redis_key(prefix: str, version: str, part: str) -> str:
    """The Redis key of ``part`` (``users``, ``items``, ``popular``, ``ready``, ``loading``) of
    a version's lists."""
    return f"{prefix}:lists:{version}:{part}"


class RedisLists:
    """The lists of the newest ``keep_versions`` model versions in one Redis database, under
    ``prefix`` (see the module doc)."""

    def __init__(self, url: str, prefix: str, keep_versions: int, client: Any = None) -> None:
        check_positive_int("keep_versions", keep_versions)
        self.url = url
        self.prefix = prefix
        self.keep_versions = keep_versions
        self.client = client if client is not None else redis_client(url)

    def key(self, version: str, part: str) -> str:
        return redis_key(self.prefix, version, part)

    def category_key(self, version: str, category: str) -> str:
        """The hash of a category's lists (user id -> list)."""
        return redis_key(self.prefix, version, f"cat:{category}")

    def ready(self, version: str) -> bool:
        """Whether ``version`` is completely loaded."""
        with translate_errors(self.url):
            return bool(self.client.exists(self.key(version, "ready")))

    def versions(self) -> list[str]:
        """Loaded (or loading) versions, oldest first."""
        with translate_errors(self.url):
            return [v.decode() for v in self.client.zrange(f"{self.prefix}:lists", 0, -1)]

    def begin(self, version: str) -> None:
        """Register ``version`` as loading (it is not ready until :meth:`finish`)."""
        with translate_errors(self.url):
            self.client.zadd(f"{self.prefix}:lists", {version: time.time()})

    def finish(self, version: str, popular: Pair) -> None:
        """Store the popular list and mark ``version`` ready (the last key written, so a reader
        never uses a half-loaded version); then drop the versions beyond ``keep_versions``."""
        with translate_errors(self.url):
            self.client.set(self.key(version, "popular"), encode_list(*popular))
            self.client.set(self.key(version, "ready"), str(time.time()))
        self.prune(keep=version)

    def load(
        self,
        version: str,
        user_ids: Any,
        item_ids: Any,
        lists: Lists,
        *,
        batch: int = 2_000,
        force: bool = False,
    ) -> bool:
        """Copy a version's lists into Redis unless they are there; returns whether it loaded.

        ``user_ids`` / ``item_ids`` are the version's vocabularies (:class:`recforge.Vocabulary`),
        which name the rows. A loader killed half-way leaves keys that the next load overwrites.
        """
        if not force and self.ready(version):
            return False
        self.begin(version)
        with translate_errors(self.url):
            parts = [(self.key(version, "users"), user_ids, lists.users)]
            parts.append((self.key(version, "items"), item_ids, lists.items))
            parts += [(self.category_key(version, c), user_ids, pair) for c, pair in lists.categories.items()]
            self.client.set(self.key(version, "categories"), json.dumps(list(lists.categories)))
            for key, names, (ids, scores) in parts:
                self.client.delete(key)
                for start in range(0, len(names), batch):
                    stop = min(start + batch, len(names))
                    rows = encode_rows(ids[start:stop], scores[start:stop])
                    keys = names.array.slice(start, stop - start).to_pylist()
                    self.client.hset(
                        key, mapping={name: row.tobytes() for name, row in zip(keys, rows, strict=True)}
                    )
        self.finish(version, lists.popular)
        return True

    def ensure(
        self,
        version: str,
        user_ids: Any,
        item_ids: Any,
        lists: Lists,
        *,
        wait_seconds: float = 600.0,
        lock_seconds: int = 600,
    ) -> None:
        """Make sure ``version``'s lists are loaded: load them, or wait for the process that is."""
        deadline = time.monotonic() + wait_seconds
        while not self.ready(version):
            with translate_errors(self.url):
                mine = self.client.set(self.key(version, "loading"), "1", nx=True, ex=lock_seconds)
            if mine:
                try:
                    self.load(version, user_ids, item_ids, lists, force=True)
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
                raw = self.client.get(self.key(version, "categories"))
                cats = [self.category_key(version, c) for c in json.loads(raw)] if raw else []
                parts = ("ready", "users", "items", "popular", "categories")
                self.client.delete(*(self.key(version, p) for p in parts), *cats)
                self.client.zrem(f"{self.prefix}:lists", version)
        return doomed


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
