"""``ItemKNN``: item-item cosine neighbours ("viewed together"), and recommendations from them.

User weights: each stored ``r_ui`` (a count, or a time-decayed, weighted sum of events; see
:mod:`recforge.weighting`) becomes::

    w_ui = 1 + ln r_ui    if r_ui >= 1
    w_ui = r_ui           if 0 < r_ui < 1

The first line is the classic ``log(count) + 1`` damping of repeated events; the second
extends it to the fractional ``r`` that decay and weights produce. The two agree at ``r = 1``
in value and in slope (both 1), so the weight is continuous, increasing, positive for every
``r > 0``, and grows like a log for large counts. Each user's row ``w_u`` is then scaled to
unit L2 norm, so every user carries the same total weight into the similarities.

Similarity: the cosine between item columns of that matrix, ``S_ij = W_i . W_j / (|W_i| |W_j|)``;
for every item only its ``neighbors`` largest positive ``S_ij`` (``j != i``; ties: lower index)
are kept, in the sparse items x items ``similarity_`` (row ``i`` = item ``i``'s neighbours). They
are computed by :func:`recforge.kernels.similarity.cosine_topn` without a dense items x items
matrix.

Recommendation: ``score_u = w_u @ similarity_``, i.e. ``score_uj = sum_i w_ui S_ij`` over the
items ``i`` the user has, of ``j``'s similarity in ``i``'s neighbour list. Every score reached
through a neighbour list is positive; items no list reaches score exactly 0 and so come after
all of them (ties by lower index): a caller wanting only neighbourhood items keeps scores > 0
and fills the rest from a fallback such as ``Popular``. ``recommend_for_history`` does the same
with the history's weights (values summed per item, then weighted and normalised as above).
``similar_items`` returns the stored lists.

Explanation: ``score_uj = sum_i w_ui S_ij`` is already a sum over the user's items, so item
``i`` contributes ``w_ui S_ij`` (zero when ``j`` is not among ``i``'s neighbours): the
neighbours that voted, with their votes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from recforge._numba import num_threads, thread_limits
from recforge._validation import check_number
from recforge.data.interactions import Interactions
from recforge.kernels.similarity import cosine_topn
from recforge.models.base import FitProgress, Recommender
from recforge.topk import select_topk

__all__ = ["ItemKNN", "knn_weights", "user_weights"]


def knn_weights(r: np.ndarray) -> np.ndarray:
    """``1 + ln r`` where ``r >= 1``, ``r`` where ``r < 1`` (float32; see the module docstring)."""
    r = np.asarray(r, dtype=np.float32)
    return np.where(r >= 1, 1 + np.log(np.maximum(r, 1)), r).astype(np.float32)


def user_weights(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Each user's row of :func:`knn_weights` of ``r``, scaled to unit L2 norm (float32 CSR, the
    structure of ``matrix``). Row by row: a block of complete rows gets the bits of the whole."""
    weights = sp.csr_matrix((knn_weights(matrix.data), matrix.indices, matrix.indptr), shape=matrix.shape)
    return _normalise_rows(weights)


def _normalise_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Scale every non-empty row of ``m`` (in place) to unit L2 norm."""
    lengths = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), lengths)
    norms = np.sqrt(np.bincount(rows, weights=np.square(m.data, dtype=np.float64), minlength=m.shape[0]))
    m.data = (m.data / norms[rows]).astype(np.float32)
    return m


class ItemKNN(Recommender):
    """Item-item cosine nearest neighbours over log-damped, user-normalised weights.

    ``neighbors``: neighbours kept per item; ``num_threads``: threads for the similarity
    computation (0: all cores).
    """

    name = "itemknn"
    explains = True

    similarity_: sp.csr_matrix
    user_weights_: sp.csr_matrix

    def __init__(self, neighbors: int = 50, num_threads: int = 0) -> None:
        self.neighbors = neighbors
        self.num_threads = num_threads

    def _validate_params(self) -> None:
        check_number("neighbors", self.neighbors, integer=True, low=1)
        check_number("num_threads", self.num_threads, integer=True, low=0)

    def _fit(self, interactions: Interactions, callback: Callable[[FitProgress], bool | None] | None) -> None:
        self.user_weights_ = user_weights(interactions.matrix)
        with thread_limits(self.num_threads):
            chunks = 8 * num_threads(self.num_threads)
            self.similarity_ = cosine_topn(self.user_weights_, int(self.neighbors), chunks=chunks)

    # scoring -----------------------------------------------------------------------------------
    def _scores_from(self, weights: sp.csr_matrix) -> np.ndarray:
        """Dense ``weights @ similarity_`` (float32)."""
        return np.asarray((weights @ self.similarity_).toarray(), dtype=np.float32)

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return self._scores_from(self.user_weights_[users])

    def _history_row(self, items: np.ndarray, values: np.ndarray) -> sp.csr_matrix:
        """The normalised weights ``w_u`` (one CSR row) of a history."""
        n_items = len(self.items_)
        r = np.bincount(items, weights=values, minlength=n_items)
        (present,) = np.nonzero(r > 0)
        row = sp.csr_matrix(
            (knn_weights(r[present]), present, np.array([0, len(present)])), shape=(1, n_items)
        )
        return _normalise_rows(row)

    def _history_scores(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        return self._scores_from(self._history_row(items, values))[0]

    def _contributions(self, items: np.ndarray, values: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``w_ui S_ij`` for each history item ``i`` and target ``j`` (module docstring)."""
        row = self._history_row(items, values)
        weights = np.zeros(len(self.items_), dtype=np.float64)
        weights[row.indices] = row.data
        votes = self.similarity_[items][:, targets].toarray().astype(np.float64)
        return (votes * weights[items][:, None]).T

    def _similar(
        self, items: np.ndarray, k: int, include_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The stored neighbour lists; among ``include_items``, every candidate is ranked by its
        similarity (0 outside the item's list; ties by lower index)."""
        if include_items is not None:
            itself = sp.csr_matrix(
                (np.ones(len(items), np.float32), (np.arange(len(items)), items)),
                shape=(len(items), len(self.items_)),
            )
            dense = np.asarray(self.similarity_[items].toarray(), dtype=np.float32)
            return select_topk(dense, k, itself, include_items=include_items, num_threads=self.num_threads)
        S = self.similarity_
        starts = S.indptr[items]
        lengths = S.indptr[items + 1] - starts
        width = max(int(lengths.max()) if len(items) else 0, 1)
        offsets = np.arange(width)
        valid = offsets[None, :] < lengths[:, None]
        positions = np.where(valid, starts[:, None] + offsets[None, :], 0)
        ids = np.where(valid, S.indices[positions] if S.nnz else -1, -1)
        scores = np.where(valid, S.data[positions] if S.nnz else -np.inf, -np.inf).astype(np.float32)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties: lower id (sorted rows)
        out_ids = np.full((len(items), k), -1, dtype=np.int32)
        out_scores = np.full((len(items), k), -np.inf, dtype=np.float32)
        out_ids[:, : order.shape[1]] = np.take_along_axis(ids, order, axis=1)
        out_scores[:, : order.shape[1]] = np.take_along_axis(scores, order, axis=1)
        return out_ids, out_scores

    # persistence -------------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        S = self.similarity_
        return {
            "similarity_indptr": S.indptr,
            "similarity_indices": S.indices,
            "similarity_data": S.data,
            "user_weights": self.user_weights_.data,
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        n_items = len(self.items_)
        self.similarity_ = sp.csr_matrix(
            (arrays["similarity_data"], arrays["similarity_indices"], arrays["similarity_indptr"]),
            shape=(n_items, n_items),
        )
        self.user_weights_ = sp.csr_matrix(
            (arrays["user_weights"], self.seen_.indices, self.seen_.indptr), shape=self.seen_.shape
        )
