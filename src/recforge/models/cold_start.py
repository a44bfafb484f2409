r"""The cold-start map: item factors from catalog attributes, for items without events.

A ridge regression from an item's attribute features ``phi_i``
(:class:`~recforge.catalog.features.AttributeFeatures`: categories, frequent string values,
numbers) to its trained factor vector ``y_i``, fitted on the items that have both::

    (W, b) = argmin  sum_i |y_i - (phi_i W + b)|^2 + penalty * |W|_F^2

(the intercept ``b`` is not penalised: features and factors are centred first). Writing the
centred features ``Phi = U S V^T``, the solution is ``W = V diag(s / (s^2 + penalty)) U^T Y``;
``penalty`` is chosen from a grid by generalised cross-validation,
``GCV = n RSS / (n - df)^2`` with ``df = sum s^2 / (s^2 + penalty)`` (Golub, Heath, Wahba
1979), all from the eigendecomposition of the ``p x p`` Gram matrix ``Phi^T Phi``: ``O(n p^2)``
for ``n`` items and ``p`` features, no ``n x n`` matrix.

A cold item then gets ``phi_i W + b``: a user's score ``x_u . (phi_i W + b)`` is what the model
predicts for an item with those attributes, so it can be recommended (and found similar) before
its first event. The map is saved beside the model (``cold_map.json`` and
``cold_map.weights.npy``) so items that arrive after training can be given factors too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recforge.catalog.features import AttributeFeatures
from recforge.catalog.items import Catalog

__all__ = ["ColdStartMap"]

#: Penalties tried, relative to the largest eigenvalue of ``Phi^T Phi``.
PENALTY_GRID = np.logspace(-7, 1, 33)


@dataclass(frozen=True)
class ColdStartMap:
    """``factors(catalog) = features(catalog) @ weights + intercept`` (see the module doc)."""

    features: AttributeFeatures
    weights: np.ndarray
    intercept: np.ndarray
    penalty: float

    @classmethod
    def fit(cls, catalog: Catalog, factors: np.ndarray) -> ColdStartMap:
        """Fit on items with known ``factors`` (row ``j`` is ``catalog``'s item ``j``)."""
        features = AttributeFeatures.fit(catalog)
        phi = features.transform(catalog).astype(np.float64)
        y = np.asarray(factors, dtype=np.float64)
        if len(phi) != len(y):
            raise ValueError(f"{len(phi)} catalog items but {len(y)} factor rows")
        intercept = y.mean(axis=0)
        if phi.shape[1] == 0 or len(phi) < 2:
            weights = np.zeros((phi.shape[1], y.shape[1]))
            return cls(features, weights.astype(np.float32), intercept.astype(np.float32), 0.0)
        mean = phi.mean(axis=0)
        phi -= mean
        y = y - intercept
        eigenvalues, vectors = np.linalg.eigh(phi.T @ phi)
        keep = eigenvalues > eigenvalues.max() * 1e-10
        s2, v = eigenvalues[keep], vectors[:, keep]
        projected = v.T @ (phi.T @ y)  # = S U^T Y, one row per kept direction
        z2 = (projected**2).sum(axis=1) / s2  # |U_k^T Y|^2
        total = float((y**2).sum())
        n = len(phi)
        best, best_gcv = 0.0, np.inf
        for penalty in PENALTY_GRID * s2.max():
            d = s2 / (s2 + penalty)
            rss = total - float(((2 * d - d * d) * z2).sum())
            df = float(d.sum())
            gcv = n * rss / max(n - df, 1e-9) ** 2
            if gcv < best_gcv:
                best, best_gcv = float(penalty), gcv
        weights = v @ (projected / (s2 + best)[:, None])
        intercept = intercept - mean @ weights
        return cls(features, weights.astype(np.float32), intercept.astype(np.float32), best)

    def transform(self, catalog: Catalog) -> np.ndarray:
        """Factor vectors (float32 ``[len(catalog), factors]``) of the catalog's items."""
        return self.features.transform(catalog) @ self.weights + self.intercept

    # persistence ----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        np.save(
            directory / "cold_map.weights.npy", np.vstack([self.weights, self.intercept]), allow_pickle=False
        )
        spec: dict[str, Any] = {"features": self.features.to_dict(), "penalty": self.penalty}
        (directory / "cold_map.json").write_text(json.dumps(spec, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: str | Path) -> ColdStartMap | None:
        """The map saved in ``directory``, or ``None`` when there is none."""
        directory = Path(directory)
        spec_path = directory / "cold_map.json"
        if not spec_path.exists():
            return None
        spec = json.loads(spec_path.read_text())
        stacked = np.load(directory / "cold_map.weights.npy", allow_pickle=False)
        features = AttributeFeatures.from_dict(spec["features"])
        return cls(features, stacked[:-1], stacked[-1], float(spec["penalty"]))
