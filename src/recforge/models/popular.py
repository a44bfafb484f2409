"""``Popular``: everyone gets the items with the largest time-decayed interaction mass.

``popularity_i = sum_u r_ui``, where ``r_ui`` already carries event weights and time decay
(:mod:`recforge.weighting`), so popularity is a time-decayed, weighted count. The baseline
every model must beat, and the fallback for users the system knows nothing about.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.models.base import FitProgress, Recommender
from recforge.topk import select_topk

__all__ = ["Popular"]


class Popular(Recommender):
    """Most-popular baseline. No hyperparameters."""

    name = "popular"

    popularity_: np.ndarray

    def __init__(self) -> None:
        pass

    def _validate_params(self) -> None:
        pass

    def _fit(self, interactions: Interactions, callback: Callable[[FitProgress], bool | None] | None) -> None:
        counts = np.asarray(interactions.matrix.sum(axis=0), dtype=np.float64).ravel()
        self.popularity_ = counts.astype(np.float32)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity_, (len(users), len(self.popularity_))).copy()

    def _recommend_indices(
        self,
        users: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None,
        exclude_items: np.ndarray | None,
        include_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Everyone ranks the same list, and a row can lose at most its excluded items from it,
        so the global top ``k + most excluded`` items (of ``include_items``, when given) are the
        only candidates ever needed: rows x candidates is scored, never rows x catalogue."""
        n_items = len(self.popularity_)
        ranking = np.lexsort((np.arange(n_items), -self.popularity_))  # ties: lower index first
        if include_items is not None:
            ranking = ranking[np.isin(ranking, include_items)]
        banned = 0 if exclude_items is None else len(exclude_items)
        widest = 0 if exclude is None or exclude.nnz == 0 else int(np.diff(exclude.indptr).max())
        candidates = ranking[: min(len(ranking), k + widest + banned)]
        position = np.full(n_items, -1, dtype=np.int64)
        position[candidates] = np.arange(len(candidates))
        local = None
        if exclude is not None:
            cols = position[exclude.indices]
            rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
            keep = cols >= 0
            local = sp.csr_matrix(
                (np.ones(int(keep.sum()), np.float32), (rows[keep], cols[keep])),
                shape=(exclude.shape[0], len(candidates)),
            )
        local_banned = None
        if exclude_items is not None:
            local_banned = position[exclude_items]
            local_banned = local_banned[local_banned >= 0]
        scores = np.broadcast_to(self.popularity_[candidates], (len(users), len(candidates))).copy()
        ids, top = select_topk(scores, k, local, exclude_items=local_banned, num_threads=self.num_threads)
        return np.where(ids >= 0, candidates[np.maximum(ids, 0)], -1).astype(np.int32), top

    def _history_scores(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.array(self.popularity_, dtype=np.float32)

    def _similar(
        self, items: np.ndarray, k: int, include_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The most popular items other than the item itself."""
        itself = sp.csr_matrix(
            (np.ones(len(items), np.float32), (np.arange(len(items)), items)),
            shape=(len(items), len(self.popularity_)),
        )
        return self._recommend_indices(items, k, itself, None, include_items)

    def _state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.popularity_ = arrays["popularity"]
