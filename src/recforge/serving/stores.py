"""List stores: where a server looks up a model version's precomputed lists.

Two implementations of one interface (:class:`ListStore`):

* :class:`MmapListStore` (the default) reads the artifact's arrays through ``mmap``: a lookup is
  a row view of ``users.ids``/``users.scores`` (``O(1)``, no copy), and the operating system's
  page cache is shared by every API process on the machine.
* :class:`RedisListStore` reads the same rows from Redis, where
  :class:`~recforge.lists.RedisLists` loaded them (by ``recforge models load``, at
  ``recforge models publish --store redis://...``, by Spark's executors, or by the first server
  that needs a version, :func:`open_redis_store`): several API processes, on several machines,
  share one copy. The key layout is :mod:`recforge.lists`'s.

  Item indices are the version's dense indices; every API process has the version's model
  (it folds in fresh events), and with it the item vocabulary that names them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from recforge.artifacts import Artifact
from recforge.lists import Pair, RedisLists, StoreUnavailable, decode_list, translate_errors

__all__ = ["ListStore", "MmapListStore", "RedisListStore", "open_redis_store"]


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

    def heal(self) -> bool:
        """Restore what the store lost (a restarted Redis); returns whether anything was."""
        return False

    #: The categories with precomputed user lists.
    categories: frozenset[str] = frozenset()

    def category(self, name: str, index: int, user_id: str) -> Pair | None:
        """The user's precomputed list within category ``name`` (one of :attr:`categories`)."""
        return None


class MmapListStore(ListStore):
    """Row views of an artifact's memory-mapped arrays."""

    def __init__(self, artifact: Artifact) -> None:
        self.version = artifact.version
        # plain ndarray views of the mapped files (no copy): slicing a np.memmap subclass
        # costs microseconds of bookkeeping per row that a lookup does not need
        self._user_ids, self._user_scores = np.asarray(artifact.user_ids), np.asarray(artifact.user_scores)
        self._item_ids, self._item_scores = np.asarray(artifact.item_ids), np.asarray(artifact.item_scores)
        self._popular = (np.asarray(artifact.popular_ids), np.asarray(artifact.popular_scores))
        self._categories = {
            name: (np.asarray(i), np.asarray(s)) for name, (i, s) in artifact.categories.items()
        }
        self.categories = frozenset(self._categories)

    def category(self, name: str, index: int, user_id: str) -> Pair | None:
        ids, scores = self._categories[name]
        return ids[index], scores[index]

    def user(self, index: int, user_id: str) -> Pair | None:
        return self._user_ids[index], self._user_scores[index]

    def item(self, index: int, item_id: str) -> Pair | None:
        return self._item_ids[index], self._item_scores[index]

    def popular(self) -> Pair:
        return self._popular


class RedisListStore(ListStore):
    """One version's lists in Redis: one ``HGET`` per lookup; the popular list read once.
    Given the ``artifact``, :meth:`heal` loads the lists again into a Redis that lost them."""

    def __init__(
        self,
        lists: RedisLists,
        version: str,
        artifact: Artifact | None = None,
        categories: frozenset[str] = frozenset(),
    ) -> None:
        self.version = version
        self._artifact = artifact
        self.categories = categories
        self._category_keys = {name: lists.category_key(version, name) for name in categories}
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

    def heal(self) -> bool:
        """Load the version's lists again when Redis no longer has them (it restarted without
        persistence, or they were evicted): one ``EXISTS`` when all is well."""
        artifact = self._artifact
        if artifact is None or self._lists.ready(self.version):
            return False
        self._lists.ensure(self.version, artifact.model.users_, artifact.model.items_, artifact.lists)
        return True

    def category(self, name: str, index: int, user_id: str) -> Pair | None:
        with translate_errors(self._lists.url):
            blob = self._client.hget(self._category_keys[name], user_id)
        return None if blob is None else decode_list(blob)


def open_redis_store(lists: RedisLists, artifact: Artifact) -> RedisListStore:
    """A list store over ``artifact``'s version in Redis, loading it first when needed."""
    lists.ensure(artifact.version, artifact.model.users_, artifact.model.items_, artifact.lists)
    return RedisListStore(lists, artifact.version, artifact, frozenset(artifact.categories))
