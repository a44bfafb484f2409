"""Where a server keeps lists and fresh events: memory-mapped files, or Redis."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from recforge.artifacts import Artifact
from recforge.config import Config
from recforge.errors import RecforgeError
from recforge.lists import RedisLists, is_redis_url
from recforge.serving.fresh import FreshEvents, MemoryFreshEvents, RedisFreshEvents
from recforge.serving.stores import ListStore, MmapListStore, open_redis_store

__all__ = ["Backend", "open_backend"]


@dataclass
class Backend:
    """How to open a version's list store, the fresh-event store, and how to let go of both."""

    name: str
    open_lists: Callable[[Artifact], ListStore]
    fresh: FreshEvents
    #: Lookups do network I/O.
    blocking: bool = False

    def close(self) -> None:
        self.fresh.close()


def open_backend(config: Config) -> Backend:
    """The backend ``serving.store`` names: ``"mmap"`` or a Redis URL."""
    serving = config.serving
    if serving.store == "mmap":
        fresh = MemoryFreshEvents(serving.fresh_events_per_user, serving.fresh_max_users)
        return Backend("mmap", MmapListStore, fresh)
    if is_redis_url(serving.store):
        lists = RedisLists(serving.store, serving.redis_prefix, serving.redis_keep_versions)
        redis_fresh = RedisFreshEvents(
            lists.client,
            serving.store,
            serving.redis_prefix,
            serving.fresh_events_per_user,
            serving.fresh_ttl_seconds,
        )
        return Backend("redis", functools.partial(open_redis_store, lists), redis_fresh, blocking=True)
    raise RecforgeError(f"serving.store must be 'mmap' or a redis:// URL, got {serving.store!r}")
