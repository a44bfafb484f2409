"""The catalog as a serving process sees it: availability, categories, cold items and attributes
over the served model's items, kept exact within ``[catalog] poll_seconds`` of any change.

**The item space.** A served version knows ``n_model`` items (its vocabulary: items with events,
and the catalog items it was fitted with). Catalog items it does not know (arrivals since it
was trained) are appended as indices ``n_model, n_model + 1, ...`` ("extra" items): they are
cold, and with a factor model that has a cold-start map they get factors from their attributes
here (:class:`~recforge.models.cold_start.ColdStartMap`), so they can be recommended before the
next training. Every answer works in this space.

**Exact within a poll.** The catalog's one source of truth is the store in the home
(:class:`~recforge.catalog.CatalogStore`, shared by every API process, like the model
versions). A :class:`LiveCatalog` holds an immutable :class:`CatalogState` and replaces it
whole (one reference assignment) when :meth:`LiveCatalog.refresh` applies the changes made
after the last change number it applied: requests read one consistent state, never a half
applied change. The app refreshes every ``poll_seconds`` in a background thread, and at once
after it writes a change itself, before acknowledging it; so a change acknowledged by any
process is in every process's answers within ``poll_seconds`` (plus the refresh's own time).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import orjson

from recforge.catalog import Catalog, CatalogStore
from recforge.catalog.items import NO_TIME
from recforge.catalog.store import ItemRow
from recforge.models.base import FactorRecommender, Recommender
from recforge.serving.ids import IdIndex

if TYPE_CHECKING:
    from recforge.models.cold_start import ColdStartMap
    from recforge.serving.telemetry import Metrics

__all__ = ["COLD", "UNAVAILABLE", "CatalogState", "CatalogWatcher", "LiveCatalog", "flags_of"]

log = logging.getLogger("recforge.serving")
_NONE = np.zeros(0, dtype=np.int32)
#: Changes read from the store per query while catching up.
_BATCH = 100_000
#: Bits of :attr:`CatalogState.flags`.
UNAVAILABLE, COLD = 1, 2


def flags_of(available: np.ndarray, cold: np.ndarray) -> np.ndarray:
    """One byte per item: :data:`UNAVAILABLE` and :data:`COLD` bits."""
    return (~available).astype(np.uint8) | (cold.astype(np.uint8) << 1)


@dataclass(frozen=True)
class CatalogState:
    """One consistent view of the catalog over the served item space (see the module doc).

    Arrays have one entry per item (``n_model + len(extra_names)``): ``available``, ``cold`` (no
    events in the model's data), ``created_us`` (:data:`~recforge.catalog.items.NO_TIME` for an
    item the catalog does not list), ``listed`` (the catalog lists it); ``categories`` and
    ``attributes`` (JSON text) are lists; ``members`` maps a category to the sorted indices of
    its items, ``eligible`` to those of its available items; ``extra_factors`` are the extra
    items' factors (``None`` without a cold-start map). ``flags`` packs ``available`` and ``cold``
    into one byte per item (:data:`UNAVAILABLE`, :data:`COLD`), so the common check of a list's
    head is one gather.
    """

    seq: int
    n_model: int
    available: np.ndarray
    cold: np.ndarray
    listed: np.ndarray
    created_us: np.ndarray
    categories: list[tuple[str, ...]]
    attributes: list[bytes | None]
    members: dict[str, np.ndarray]
    eligible: dict[str, np.ndarray]
    flags: np.ndarray
    extra_names: list[str]
    extra_index: dict[str, int]
    extra_factors: np.ndarray | None

    @property
    def n_items(self) -> int:
        return len(self.available)

    def candidates(self, categories: Sequence[str] | None) -> np.ndarray | None:
        """Sorted indices of the available items in any of ``categories``; ``None`` without
        categories (every available item: callers drop :meth:`unavailable` instead)."""
        if categories is None:
            return None
        found = [self.eligible[name] for name in categories if name in self.eligible]
        if not found:
            return _NONE
        return found[0] if len(found) == 1 else np.unique(np.concatenate(found))

    def latest(self, category: str, k: int) -> np.ndarray:
        """The ``k`` newest available items of ``category`` by ``created_at`` (ties: lower index)."""
        items = self.candidates([category])
        assert items is not None
        items = items[self.listed[items]]
        order = np.lexsort((items, -self.created_us[items]))
        return items[order[:k]]

    def names(self, indices: np.ndarray, model_names: IdIndex) -> list[str]:
        """External ids of served-space indices."""
        indices = np.asarray(indices)
        if not len(self.extra_names) or not len(indices) or indices.max() < self.n_model:
            return model_names.names(indices)
        out = []
        for index in indices.tolist():
            if index < self.n_model:
                out.extend(model_names.names(np.array([index])))
            else:
                out.append(self.extra_names[index - self.n_model])
        return out


class LiveCatalog:
    """The :class:`CatalogState` of one served version, kept up to date from the store."""

    def __init__(self, model: Recommender, items: IdIndex, store: CatalogStore | None) -> None:
        self.model = model
        self.items = items
        self.store = store
        self._lock = threading.Lock()
        cold = np.zeros(len(model.items_), dtype=bool)
        cold[model.cold_items_] = True
        n = len(model.items_)
        factors = model.item_factors_ if isinstance(model, FactorRecommender) else None
        self._cold_map: ColdStartMap | None = model.cold_map_ if factors is not None else None
        self.state = CatalogState(
            seq=0,
            n_model=n,
            available=np.ones(n, dtype=bool),
            cold=cold,
            listed=np.zeros(n, dtype=bool),
            created_us=np.full(n, NO_TIME, dtype=np.int64),
            categories=[()] * n,
            attributes=[None] * n,
            members={},
            eligible={},
            flags=flags_of(np.ones(n, dtype=bool), cold),
            extra_names=[],
            extra_index={},
            extra_factors=None
            if self._cold_map is None or factors is None
            else np.zeros((0, factors.shape[1]), dtype=np.float32),
        )
        self.refresh()

    def index(self, item_id: str) -> int:
        """The served-space index of an item, or ``-1``."""
        found = self.items.get(item_id)
        if found >= 0:
            return found
        return self.state.extra_index.get(item_id, -1)

    def refresh(self) -> int:
        """Apply the store's changes since the state's change number; returns how many."""
        if self.store is None or not self.store.exists:
            return 0
        with self._lock:
            applied = 0
            while True:
                rows, _ = self.store.rows(self.state.seq, _BATCH)
                if not rows:
                    return applied
                self.state = self._apply(self.state, rows)
                applied += len(rows)

    # applying changes -----------------------------------------------------------------------
    def _apply(self, state: CatalogState, rows: list[ItemRow]) -> CatalogState:
        latest = {row.item_id: row for row in rows}  # an item changed twice: its last record
        extra_names = list(state.extra_names)
        extra_index = dict(state.extra_index)
        positions = np.empty(len(latest), dtype=np.int64)
        for j, item_id in enumerate(latest):
            index = self.items.get(item_id)
            if index < 0:
                index = extra_index.get(item_id, -1)
            if index < 0:
                index = state.n_model + len(extra_names)
                extra_index[item_id] = index
                extra_names.append(item_id)
            positions[j] = index
        records = list(latest.values())
        n = state.n_model + len(extra_names)
        grow = n - state.n_items
        available = _grown(state.available, grow, True)
        cold = _grown(state.cold, grow, True)
        listed = _grown(state.listed, grow, False)
        created = _grown(state.created_us, grow, NO_TIME)
        categories = state.categories + [()] * grow
        attributes = state.attributes + [None] * grow
        added: dict[str, list[int]] = {}
        removed: dict[str, list[int]] = {}
        for index, row in zip(positions.tolist(), records, strict=True):
            available[index] = row.available
            listed[index] = True
            created[index] = row.created_at_us
            attributes[index] = row.attributes.encode()
            new = tuple(orjson.loads(row.categories))
            old = categories[index]
            if new != old:
                for name in set(old) - set(new):
                    removed.setdefault(name, []).append(index)
                for name in set(new) - set(old):
                    added.setdefault(name, []).append(index)
                categories[index] = new
        members = dict(state.members)
        touched = set(added) | set(removed)
        for index in positions.tolist():  # availability may have changed: their categories too
            touched.update(categories[index])
        for name in added.keys() | removed.keys():
            current = members.get(name, _NONE)
            if name in removed:
                current = np.setdiff1d(current, removed[name], assume_unique=True)
            if name in added:
                current = np.union1d(current, np.asarray(added[name], dtype=np.int32))
            if len(current):
                members[name] = current.astype(np.int32)
            else:
                members.pop(name, None)
        eligible = dict(state.eligible)
        for name in touched:
            if name in members:
                eligible[name] = members[name][available[members[name]]]
            else:
                eligible.pop(name, None)
        extra_factors = self._extra_factors(state, positions, records, n)
        return replace(
            state,
            seq=max(r.seq for r in rows),
            available=available,
            cold=cold,
            listed=listed,
            created_us=created,
            categories=categories,
            attributes=attributes,
            members=members,
            eligible=eligible,
            flags=flags_of(available, cold),
            extra_names=extra_names,
            extra_index=extra_index,
            extra_factors=extra_factors,
        )

    def _extra_factors(
        self, state: CatalogState, positions: np.ndarray, records: list[ItemRow], n: int
    ) -> np.ndarray | None:
        """The extra items' factors, recomputed for those whose record changed."""
        if self._cold_map is None or state.extra_factors is None:
            return None
        old = state.extra_factors
        factors = np.zeros((n - state.n_model, old.shape[1]), dtype=np.float32)
        factors[: len(old)] = old
        changed = positions >= state.n_model
        if changed.any():
            rows = [records[j] for j in np.flatnonzero(changed).tolist()]
            mapped = self._cold_map.transform(Catalog.from_rows(rows))
            factors[positions[changed] - state.n_model] = mapped
        return factors


class CatalogWatcher:
    """The thread that refreshes the catalogs of the served versions (the published one, and an
    experiment's pinned arms) every ``poll_seconds``."""

    def __init__(
        self, served: Callable[[], list[LiveCatalog]], poll_seconds: float, metrics: Metrics | None = None
    ) -> None:
        self.served = served
        self.poll_seconds = poll_seconds
        self.metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and self.poll_seconds > 0:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="recforge-catalog-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            catalogs = self.served()
            try:
                for live in catalogs:
                    live.refresh()
            except Exception as error:  # a store hiccup: keep the state we have, try again
                log.error("could not read catalog changes: %s", error)
                continue
            if self.metrics is not None and catalogs:
                self.metrics.catalog_seq.set(catalogs[0].state.seq)


def _grown(array: np.ndarray, grow: int, fill: object) -> np.ndarray:
    """A copy of ``array`` with ``grow`` entries of ``fill`` appended."""
    out = np.empty(len(array) + grow, dtype=array.dtype)
    out[: len(array)] = array
    out[len(array) :] = fill
    return out
