"""Erasure while serving: once a deletion is acknowledged, no API process answers from what it
erased.

The tombstones of the event store (:mod:`recforge.data.tombstones`) are the record, on disk, and
every API process of a home reads the same file: one ``stat`` per request notices a deletion
another process acknowledged, so it holds in every worker from that moment, with the memory-mapped
store and with Redis alike. For a user with tombstones:

* fresh events that a tombstone covers are dropped when read; the process that acknowledged the
  deletion also removes them from the fresh-event store (its memory, or Redis for everyone);
* a served version whose training data were read before the user's latest deletion still holds
  what was erased (in the user's precomputed list, and in the trained history a fold-in starts
  from): it answers that user as one it does not know, from the popular list (fallback
  ``erased``), folding in only events the user made since. A version built after the deletion
  (which left the erased events out) serves the user normally again.
"""

from __future__ import annotations

from recforge.data.tombstones import Tombstone, Tombstones
from recforge.serving.fresh import FreshEvent
from recforge.serving.model import ServedModel

__all__ = ["Erasures"]

_NONE: tuple[Tombstone, ...] = ()


class Erasures:
    """The deletions a server honours (see the module doc)."""

    def __init__(self, tombstones: Tombstones) -> None:
        self.tombstones = tombstones

    def of(self, user_id: str) -> tuple[Tombstone, ...]:
        """The user's tombstones (usually none: one ``stat`` and a dict lookup)."""
        return self.tombstones.by_user().get(user_id, _NONE)

    @staticmethod
    def forgets(served: ServedModel, stones: tuple[Tombstone, ...]) -> bool:
        """Whether ``served`` was built from data read before one of these deletions (or when,
        is not recorded)."""
        read = served.read_us
        return any(read is None or stone.at_us > read for stone in stones)

    @staticmethod
    def keep(events: list[FreshEvent], stones: tuple[Tombstone, ...]) -> list[FreshEvent]:
        """The fresh events no tombstone covers."""
        if not stones or not events:
            return events
        return [e for e in events if not any(s.covers(e.item_id, e.timestamp_us) for s in stones)]
