"""Precompute what serving looks up: top-K per user, similar items per item, a popular list.

Serving does lookups, not matrix products: after every training, each known user's top
``k_users`` unseen items, each item's ``k_items`` most similar items and the ``k_popular``
most popular items (the fallback for users the model does not know) are computed once, with
the model's own bounded-memory top-K path, and stored in the model's artifact (the format is
:mod:`recforge.lists`'s).
"""

from __future__ import annotations

import numpy as np

from recforge.data.interactions import Interactions
from recforge.lists import Lists
from recforge.models.base import FactorRecommender, Recommender

__all__ = ["item_source", "popular_list", "precompute"]


def item_source(model: Recommender) -> str:
    """Where a model's similar items come from: ``factors``, ``cooccurrence`` or ``popular``."""
    if isinstance(model, FactorRecommender):
        return "factors"
    if model.name == "popular":
        return "popular"
    return "cooccurrence"


def popular_list(interactions: Interactions, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items with the largest time-decayed mass ``sum_u r_ui`` (ties: lower index)."""
    mass = np.asarray(interactions.matrix.sum(axis=0), dtype=np.float64).ravel()
    order = np.lexsort((np.arange(len(mass)), -mass))[:k]
    order = order[mass[order] > 0]
    return order.astype(np.int32), mass[order].astype(np.float32)


def precompute(
    model: Recommender,
    interactions: Interactions,
    *,
    k_users: int,
    k_items: int,
    k_popular: int,
) -> Lists:
    """All three lists for a model fitted on ``interactions`` (seen items filtered for users),
    of the sizes ``[pipeline] k_users / k_items / k_popular`` configure."""
    if len(model.users_) != interactions.n_users or len(model.items_) != interactions.n_items:
        raise ValueError("the model was not fitted on these interactions (shapes differ)")
    users = model.recommend(np.arange(interactions.n_users, dtype=np.int32), k=k_users, filter_seen=True)
    items = model.similar_items(np.arange(interactions.n_items, dtype=np.int32), k=k_items)
    return Lists(users, items, popular_list(interactions, k_popular), item_source(model))
