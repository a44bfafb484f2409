"""Brute-force answers to check the served ones against (issue 15): every eligible item scored
in float64, sorted by score then index, the cold cap applied as the server documents it."""

from __future__ import annotations

import weakref

import numpy as np

from recforge.serving.live_catalog import CatalogState
from recforge.serving.model import ServedModel

_MASKS: dict[tuple[int, str], tuple[weakref.ref, np.ndarray]] = {}


def _in_category(state: CatalogState, name: str) -> np.ndarray:
    """Which items list ``name`` among their categories (from each item's own record; cached
    per state, which never changes)."""
    key = (id(state), name)
    cached = _MASKS.get(key)
    if cached is None or cached[0]() is not state:
        mask = np.fromiter((name in names for names in state.categories), bool, state.n_items)
        cached = _MASKS[key] = (weakref.ref(state), mask)
    return cached[1]


def eligible(state: CatalogState, categories: tuple[str, ...] | None) -> np.ndarray:
    """Available items in any of the categories (every available item without categories)."""
    allowed = state.available.copy()
    if categories is not None:
        inside = np.zeros(state.n_items, dtype=bool)
        for name in categories:
            inside |= _in_category(state, name)
        allowed &= inside
    return np.flatnonzero(allowed)


def capped(order: np.ndarray, cold: np.ndarray, k: int, cap: int) -> np.ndarray:
    """The first ``k`` of ``order`` with at most ``cap`` cold items; the other cold ones after
    every warm one."""
    picked, skipped, colds = [], [], 0
    for item in order.tolist():
        if cold[item]:
            if colds >= cap:
                skipped.append(item)
                continue
            colds += 1
        picked.append(item)
    return np.array((picked + skipped)[:k], dtype=np.int64)


def brute_force(
    served: ServedModel,
    state: CatalogState,
    k: int,
    cap: int,
    categories: tuple[str, ...] | None,
    *,
    user: int = -1,
    history: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Served-space indices of the exact answer for a known ``user``, a folded-in ``history``
    (items, values), or (neither) an unknown user's popular list."""
    model = served.model
    items = eligible(state, categories)
    n_model = state.n_model
    if history is not None or user >= 0:
        vector = np.asarray(
            model.user_factors_[user] if history is None else model.fold_in(*history), dtype=np.float64
        )
        factors = np.asarray(model.item_factors_, dtype=np.float64)
        if state.extra_factors is not None and len(state.extra_factors):
            factors = np.vstack([factors, np.asarray(state.extra_factors, dtype=np.float64)])
        scores = factors[items] @ vector
        drop = model.seen_[user].indices if history is None else history[0]
    else:
        mass = np.zeros(state.n_items)
        mass[:n_model] = np.asarray(model.seen_.sum(axis=0), dtype=np.float64).ravel()
        scores = mass[items]
        drop = np.zeros(0, dtype=np.int64)
    keep = ~np.isin(items, drop)
    items, scores = items[keep], scores[keep]
    order = items[np.lexsort((items, -scores))]
    return capped(order, state.cold, k, cap)
