"""``EASE``: the embarrassingly shallow autoencoder (Steck, WWW 2019), an item-item model in
closed form.

EASE learns an items x items weight matrix ``B`` with a zero diagonal that reconstructs each
user's row of ``r`` values from the user's other items::

    min_B  |X - X B|_F^2 + regularization * |B|_F^2   subject to  diag(B) = 0

``X`` is the users x items matrix of ``r`` (event weights and decay included, as every model
reads it). Its solution, with ``P = (X^T X + regularization * I)^-1``, is::

    B = I - P diag(1 / diag(P)),   i.e.  B_ij = -P_ij / P_jj (i != j),  B_jj = 0

A user's scores are ``x_u B`` (``score_uj = sum_i r_ui B_ij``); a new user known by a short
history is scored the same way, a product of the history's ``r`` with ``B``'s rows (no solve:
EASE's fold-in is exact and free). Similar items of ``i``: the largest ``B_ij`` of row ``i``,
the items that ``i``'s presence raises most.

**Cost.** Forming ``G = X^T X`` costs ``sum_u n_u^2`` multiply-adds (a parallel numba walk
over the rows, :func:`recforge.kernels.similarity.item_gram`), and the inverse, by a Cholesky
factorisation and its inverse (LAPACK ``potrf`` + ``potri``, in place, float32), about ``n^3``
flops for ``n`` items. Memory is one dense ``n x n`` float32 matrix (``4 n^2`` bytes); ``B``
takes its place. That is why the catalogue is capped (``max_items``, 20,000 by default: 1.6 GB):
above the cap ``fit`` raises an error saying how much memory the catalogue would need.

Scoring a block of users is a sparse-dense product (``n_u n`` multiply-adds per user), then
the bounded top-K of :mod:`recforge.topk`. ``num_threads`` sets the numba and BLAS threads of
the fit (0: all cores).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from recforge._numba import num_threads, thread_limits
from recforge._validation import check_number
from recforge.data.interactions import Interactions
from recforge.kernels.similarity import item_gram, mirror_lower
from recforge.models.base import FitProgress, Recommender
from recforge.topk import select_topk

__all__ = ["EASE", "ease_memory_bytes"]

#: scores (float32) per block when scoring users or rows of ``B``: 16 MB
BLOCK_SCORES = 1 << 22


def ease_memory_bytes(n_items: int) -> int:
    """Bytes EASE needs for ``n_items`` items: the dense ``n x n`` float32 matrix."""
    return 4 * int(n_items) ** 2


class EASE(Recommender):
    """Embarrassingly shallow autoencoder (see the module doc).

    ``regularization``: the ``lambda`` added to the Gram matrix's diagonal (larger: smoother
    weights; it scales with the ``r`` values); ``max_items``: the largest catalogue ``fit``
    accepts; ``num_threads``: BLAS threads while fitting (0: all cores).
    """

    name = "ease"
    explains = True

    weights_: np.ndarray

    def __init__(self, regularization: float = 500.0, max_items: int = 20_000, num_threads: int = 0) -> None:
        self.regularization = regularization
        self.max_items = max_items
        self.num_threads = num_threads

    def _validate_params(self) -> None:
        check_number("regularization", self.regularization, low=0, low_inclusive=False)
        check_number("max_items", self.max_items, integer=True, low=1)
        check_number("num_threads", self.num_threads, integer=True, low=0)

    def _fit(self, interactions: Interactions, callback: Callable[[FitProgress], bool | None] | None) -> None:
        n = interactions.n_items
        if n > self.max_items:
            raise ValueError(
                f"EASE needs a dense items x items matrix: {n:,} items take "
                f"{ease_memory_bytes(n) / 2**30:.1f} GiB, above max_items={self.max_items:,} "
                f"({ease_memory_bytes(self.max_items) / 2**30:.1f} GiB); raise max_items where the "
                "memory is there, or use ALS"
            )
        X = sp.csr_matrix(interactions.matrix, dtype=np.float32)
        threads = num_threads(self.num_threads)
        with thread_limits(numba_threads=threads, blas_threads=threads):
            self.weights_ = ease_weights(X, float(self.regularization))

    # scoring -----------------------------------------------------------------------------------
    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.seen_[users] @ self.weights_, dtype=np.float32)

    def _history_scores(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        r = np.bincount(items, weights=values, minlength=len(self.items_))
        (present,) = np.nonzero(r)
        return np.asarray(r[present].astype(np.float32) @ self.weights_[present], dtype=np.float32)

    def _contributions(self, items: np.ndarray, values: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``r_i B_it`` for each history item ``i`` and target ``t``: the score ``sum_i r_i B_it``
        term by term (a ``len(targets) x len(items)`` slice of ``B``, cheaper than a fold-in)."""
        block = np.asarray(self.weights_[np.ix_(items, targets)], dtype=np.float64)
        return (block * np.asarray(values, dtype=np.float64)[:, None]).T

    def _similar(
        self, items: np.ndarray, k: int, include_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``B`` (the item's weights as a one-item history), among ``include_items``."""
        n = len(self.items_)
        block = max(1, BLOCK_SCORES // max(n, 1))
        ids = np.empty((len(items), k), dtype=np.int32)
        scores = np.empty((len(items), k), dtype=np.float32)
        for start in range(0, len(items), block):
            rows = items[start : start + block]
            itself = sp.csr_matrix(
                (np.ones(len(rows), np.float32), (np.arange(len(rows)), rows)), shape=(len(rows), n)
            )
            stop = start + len(rows)
            ids[start:stop], scores[start:stop] = select_topk(
                np.asarray(self.weights_[rows], dtype=np.float32),
                k,
                itself,
                include_items=include_items,
                num_threads=self.num_threads,
            )
        return ids, scores

    # persistence -------------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights_ = arrays["weights"]


def ease_weights(X: sp.csr_matrix, regularization: float) -> np.ndarray:
    """``B`` of the module doc for the users x items float32 CSR ``X``: ``G = X^T X`` dense
    (:func:`~recforge.kernels.similarity.item_gram`), ``P = (G + regularization I)^-1`` by
    LAPACK's Cholesky inverse in place, then ``B_ij = -P_ij / P_jj`` with a zero diagonal;
    float32 throughout. Raises ``ValueError`` when ``G + regularization I`` is not positive
    definite in float32."""
    n = X.shape[1]
    gram = item_gram(X, chunks=64 * num_threads())
    step = max(1, BLOCK_SCORES // max(n, 1))
    gram[np.diag_indices(n)] += np.float32(regularization)
    # gram is symmetric, so its C-ordered memory is the Fortran-ordered gram: LAPACK works in
    # place on gram.T, and "upper" there is the lower triangle of gram
    factor, info = lapack.spotrf(gram.T, lower=0, clean=0, overwrite_a=1)
    if info == 0:
        inverse, info = lapack.spotri(factor, lower=0, overwrite_c=1)
    if info != 0:
        raise ValueError(
            f"EASE: X^T X + {regularization:g} I is not positive definite in float32 (LAPACK info "
            f"{info}); increase regularization"
        )
    P = inverse.T  # the same memory as gram, C-ordered; its lower triangle holds P
    mirror_lower(P)
    diagonal = np.diag(P).copy()
    for start in range(0, n, step):
        rows = P[start : start + step]
        rows /= -diagonal[None, :]
    P[np.diag_indices(n)] = 0
    return P
