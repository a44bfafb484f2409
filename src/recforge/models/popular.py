"""``Popular``: everyone gets the items with the largest time-decayed interaction mass.

``popularity_i = sum_u r_ui``, where ``r_ui`` already carries event weights and time decay
(:mod:`recforge.weighting`), so popularity is a time-decayed, weighted count. The baseline
every model must beat, and the fallback for users the system knows nothing about.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recforge.data.interactions import Interactions
from recforge.models.base import FitProgress, Recommender
from recforge.recommend import select_topk

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

    def _history_scores(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.array(self.popularity_, dtype=np.float32)

    def _similar(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self._score_users(items)
        itself = np.zeros_like(scores, dtype=bool)
        itself[np.arange(len(items)), items] = True
        scores[itself] = -np.inf
        return select_topk(scores, k)

    def _state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.popularity_ = arrays["popularity"]
