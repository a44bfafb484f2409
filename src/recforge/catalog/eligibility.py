"""Eligibility: which items of a model's vocabulary may be answered, as sorted index arrays.

For a vocabulary of ``n`` items (a model's ``items_``): ``available[i]`` (an item the catalog
does not list is available: recforge recommends what it has events for unless told otherwise)
and, per category, the sorted indices of its members (available or not). A filter is then a
sorted index array: :meth:`Eligibility.items` gives the available members of any of the given
categories, what :func:`recforge.topk.recommend_all` takes as ``include_items``; without
categories, :meth:`Eligibility.unavailable` is what it takes as ``exclude_items``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from recforge.catalog.items import Catalog
    from recforge.data.vocabulary import Vocabulary

__all__ = ["Eligibility", "members_of"]

_NONE = np.zeros(0, dtype=np.int32)


@dataclass(frozen=True)
class Eligibility:
    """``available`` (bool ``[n_items]``) and ``members`` (category -> sorted int32 indices)."""

    available: np.ndarray
    members: dict[str, np.ndarray]

    @classmethod
    def of(cls, catalog: Catalog, vocabulary: Vocabulary) -> Eligibility:
        """The catalog's records over ``vocabulary`` (catalog items outside it are ignored)."""
        index = vocabulary.lookup(list(catalog.item_ids)) if len(catalog) else np.zeros(0, np.int32)
        available = np.ones(len(vocabulary), dtype=bool)
        listed = index >= 0
        available[index[listed]] = catalog.available[listed]
        rows = np.flatnonzero(listed)
        members = members_of(index[rows], [catalog.categories[r] for r in rows.tolist()])
        return cls(available, members)

    @property
    def n_items(self) -> int:
        return len(self.available)

    def items(self, categories: str | Sequence[str] | None = None) -> np.ndarray:
        """Sorted indices of the available items in any of ``categories`` (all available items
        when ``None``); unknown categories contribute nothing."""
        if categories is None:
            return np.flatnonzero(self.available).astype(np.int32)
        names = [categories] if isinstance(categories, str) else list(categories)
        found = [self.members[name] for name in names if name in self.members]
        if not found:
            return _NONE
        union = found[0] if len(found) == 1 else np.unique(np.concatenate(found))
        return union[self.available[union]]

    def unavailable(self) -> np.ndarray:
        """Sorted indices of the unavailable items."""
        return np.flatnonzero(~self.available).astype(np.int32)

    def largest(self, count: int) -> list[str]:
        """The ``count`` categories with the most members (ties by name)."""
        ranked = sorted(self.members.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        return [name for name, _ in ranked[:count]]


def members_of(indices: np.ndarray, categories: Iterable[tuple[str, ...]]) -> dict[str, np.ndarray]:
    """Category -> sorted member indices, from each item's index and its categories."""
    names: list[str] = []
    owners: list[int] = []
    for item, cats in zip(indices.tolist(), categories, strict=True):
        names.extend(cats)
        owners.extend([item] * len(cats))
    if not names:
        return {}
    labels, codes = np.unique(np.asarray(names, dtype=object), return_inverse=True)
    items = np.asarray(owners, dtype=np.int64)
    order = np.lexsort((items, codes))
    codes, items = codes[order], items[order]
    bounds = np.flatnonzero(np.diff(codes, prepend=-1, append=len(labels) + 1))
    return {
        str(labels[codes[start]]): np.unique(items[start:stop]).astype(np.int32)
        for start, stop in itertools.pairwise(bounds)
    }
