"""A small hand-made factor model for the serving tests and benchmarks (a stand-in for ALS).

``ToyFactors`` takes truncated-SVD factors of ``r`` (``U sqrt(S)``, ``V sqrt(S)``) and folds a
user in exactly as implicit ALS does: with confidence ``c_i = 1 + alpha * r_i`` on the history
items and preference 1, the user vector is the solution of

    (Y^T Y + Y_h^T (C_h - I) Y_h + lambda I) x = Y_h^T c_h

(``Y^T Y`` once per model, then only the history's rows): the per-request cost of a factor
model's fold-in is one ``f x f`` solve plus one ``n_items x f`` scoring.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.sparse.linalg import svds

from recforge.data.interactions import Interactions
from recforge.models.base import FactorRecommender, FitProgress
from recforge.models.registry import register


class ToyFactors(FactorRecommender):
    name = "toyfactors"

    def __init__(
        self, factors: int = 16, regularization: float = 0.1, alpha: float = 1.0, seed: int = 0
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.seed = seed

    def _validate_params(self) -> None:
        if self.factors < 1:
            raise ValueError("factors must be >= 1")

    def _fit(self, interactions: Interactions, callback: Callable[[FitProgress], bool | None] | None) -> None:
        matrix = interactions.matrix.astype(np.float64)
        rank = min(self.factors, min(matrix.shape) - 1)
        u, s, vt = svds(matrix, k=rank, random_state=self.seed)
        root = np.sqrt(s)
        self.user_factors_ = np.ascontiguousarray(u * root, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(vt.T * root, dtype=np.float32)

    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        gram = getattr(self, "_gram", None)
        if gram is None:
            y = np.asarray(self.item_factors_, dtype=np.float64)
            gram = self._gram = y.T @ y
        rows = np.asarray(self.item_factors_[items], dtype=np.float64)
        confidence = 1.0 + self.alpha * np.asarray(values, dtype=np.float64)
        a = gram + rows.T @ ((confidence - 1.0)[:, None] * rows) + self.regularization * np.eye(len(gram))
        return np.linalg.solve(a, rows.T @ confidence).astype(np.float32)


register(ToyFactors)
