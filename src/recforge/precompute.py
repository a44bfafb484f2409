"""Precompute what serving looks up: top-K per user, similar items per item, a popular list.

Serving does lookups, not matrix products: after every training, each known user's top
``k_users`` unseen items, each item's ``k_items`` most similar items and the ``k_popular``
most popular items (the fallback for users the model does not know) are computed once, with
the model's own bounded-memory top-K path, and stored in the model's artifact (the format is
:mod:`recforge.lists`'s). With a catalog, each user's top ``k_category`` unseen items of each
of the ``category_lists`` largest categories too (``model.recommend(..., items=members)``).
Lists ignore availability: it changes without retraining and is applied when answering.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recforge.catalog.eligibility import Eligibility
from recforge.data.interactions import Interactions
from recforge.lists import Lists, Pair
from recforge.models.base import FactorRecommender, Recommender

__all__ = ["item_source", "popular_list", "popularity", "precompute"]


def item_source(model: Recommender) -> str:
    """Where a model's similar items come from: ``factors``, ``cooccurrence`` or ``popular``."""
    if isinstance(model, FactorRecommender):
        return "factors"
    if model.name == "popular":
        return "popular"
    return "cooccurrence"


def popularity(matrix: sp.csr_matrix | sp.csr_array) -> np.ndarray:
    """Each item's time-decayed mass ``sum_u r_ui`` (float64), the popular list's score."""
    return np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel()


def popular_list(interactions: Interactions, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` items with the largest time-decayed mass ``sum_u r_ui`` (ties: lower index)."""
    mass = popularity(interactions.matrix)
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
    eligibility: Eligibility | None = None,
    category_lists: int = 0,
    k_category: int = 50,
) -> Lists:
    """All three lists for a model fitted on ``interactions`` (seen items filtered for users),
    of the sizes ``[pipeline] k_users / k_items / k_popular`` configure, and the lists of the
    ``category_lists`` largest categories of ``eligibility`` (the catalog's, over the model's
    items). A model fitted with a catalog lists more items than the interactions it was given:
    they are widened to its items."""
    if len(model.items_) > interactions.n_items:
        interactions = interactions.with_items(model.items_)
    if len(model.users_) != interactions.n_users or len(model.items_) != interactions.n_items:
        raise ValueError("the model was not fitted on these interactions (shapes differ)")
    everyone = np.arange(interactions.n_users, dtype=np.int32)
    users = model.recommend(everyone, k=k_users, filter_seen=True)
    items = model.similar_items(np.arange(interactions.n_items, dtype=np.int32), k=k_items)
    categories: dict[str, Pair] = {}
    if eligibility is not None and category_lists > 0:
        for name in eligibility.largest(category_lists):
            categories[name] = model.recommend(everyone, k=k_category, items=eligibility.members[name])
    return Lists(users, items, popular_list(interactions, k_popular), item_source(model), categories)
