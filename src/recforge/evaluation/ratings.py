"""Rating prediction error on held-out ratings: RMSE and MAE (as Spark's RegressionEvaluator).

For the held-out pairs ``(u, i)`` with a rating ``r_ui`` that the model knows both ends of::

    RMSE = sqrt(mean (p_ui - r_ui)^2)        MAE = mean |p_ui - r_ui|

``p_ui`` is the model's :meth:`~recforge.models.base.FactorRecommender.predict`. Pairs whose user
or item the model has not seen are left out and counted (``unscored``), as Spark's
``coldStartStrategy="drop"`` does. Models without a rating prediction (item-kNN, popularity)
have no error (``nan``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.models.base import FactorRecommender, Recommender

__all__ = ["RATING_METRICS", "rating_errors"]

#: The rating metrics ``recforge evaluate --metric`` accepts beside the ranking metrics.
RATING_METRICS: tuple[str, ...] = ("rmse", "mae")


def rating_errors(model: Recommender, test: Interactions) -> dict[str, float]:
    """``{"rmse", "mae", "pairs", "unscored"}`` of ``model`` on ``test``'s ratings (its
    ``ratings`` view, else its matrix values)."""
    ratings = test.ratings if test.ratings is not None else test.matrix
    coo = sp.coo_matrix(ratings)
    pairs = int(coo.nnz)
    if not isinstance(model, FactorRecommender) or pairs == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "pairs": 0.0, "unscored": float(pairs)}
    predicted = model.predict(test.users.ids(coo.row), test.items.ids(coo.col))
    scored = np.isfinite(predicted)
    error = predicted[scored].astype(np.float64) - coo.data[scored].astype(np.float64)
    n = int(scored.sum())
    if n == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "pairs": 0.0, "unscored": float(pairs)}
    return {
        "rmse": float(np.sqrt(np.mean(error * error))),
        "mae": float(np.mean(np.abs(error))),
        "pairs": float(n),
        "unscored": float(pairs - n),
    }
