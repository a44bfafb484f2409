"""Top-K for many users and similar items, with memory bounded by a block size.

INTERIM NumPy implementation: correct (it is the specification of the contract below) but
not yet the fast blocked numba kernel the top-K issue asks for.

Contract of every function here:

* results are ``ids`` int32 ``[n_rows, k]`` and ``scores`` float32 ``[n_rows, k]``, best first;
* ties are broken by the lower item index;
* a row with fewer than ``k`` candidates is padded with id ``-1`` and score ``-inf``;
* ``exclude`` is a CSR rows x items matrix: ``exclude[r, i] != 0`` (any stored entry) means
  item ``i`` is never returned for row ``r``; ``exclude_items`` (global, e.g. sold out) are
  never returned for any row; ``include_items``, when given, is the only candidate set.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["recommend_all", "select_topk", "similar_items_all"]

DEFAULT_BLOCK_ELEMENTS = 1 << 22  # scores held at once: 4M float32 = 16 MB


def select_topk(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    *,
    exclude_items: np.ndarray | None = None,
    include_items: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of each row of a dense score block (rows x items), per the module contract.

    ``scores`` may be modified in place.
    """
    scores = np.asarray(scores, dtype=np.float32)
    n_rows, n_items = scores.shape
    if exclude is not None:
        rows = np.repeat(np.arange(n_rows), np.diff(exclude.indptr))
        scores[rows, exclude.indices] = -np.inf
    if exclude_items is not None and len(exclude_items):
        scores[:, np.asarray(exclude_items, dtype=np.int64)] = -np.inf
    if include_items is not None:
        keep = np.zeros(n_items, dtype=bool)
        keep[np.asarray(include_items, dtype=np.int64)] = True
        scores[:, ~keep] = -np.inf
    kk = min(k, n_items)
    order = _top_order(scores, kk)
    top = np.take_along_axis(scores, order, axis=1)
    ids = np.full((n_rows, k), -1, dtype=np.int32)
    out = np.full((n_rows, k), -np.inf, dtype=np.float32)
    valid = np.isfinite(top)
    ids[:, :kk] = np.where(valid, order, -1)
    out[:, :kk] = np.where(valid, top, -np.inf)
    return ids, out


def _top_order(scores: np.ndarray, kk: int) -> np.ndarray:
    """Column indices of each row's ``kk`` largest scores, best first, ties by lower index.

    ``argpartition`` finds the ``kk`` best in ``O(n_items)``; only they are sorted (by score,
    then index). A row where the ``kk``-th score is tied with entries left outside the
    partition is sorted in full, so ties are always broken by the lower index.
    """
    n_items = scores.shape[1]
    if kk * 8 >= n_items:
        return np.argsort(-scores, axis=1, kind="stable")[:, :kk]
    neg = -scores
    part = np.argpartition(neg, kk - 1, axis=1)[:, :kk]
    values = np.take_along_axis(neg, part, axis=1)
    order = np.take_along_axis(part, np.lexsort((part, values), axis=1), axis=1)
    kth = values.max(axis=1, keepdims=True)
    ambiguous = np.flatnonzero((neg == kth).sum(axis=1) > (values == kth).sum(axis=1))
    if len(ambiguous):
        order[ambiguous] = np.argsort(neg[ambiguous], axis=1, kind="stable")[:, :kk]
    return order


def recommend_all(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    *,
    block_size: int | None = None,
    num_threads: int | None = None,
    exclude_items: np.ndarray | None = None,
    include_items: np.ndarray | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items by ``user_factors @ item_factors.T`` for every row of ``user_factors``.

    ``block_size`` is the number of users scored at once (default: as many as fit in
    ``DEFAULT_BLOCK_ELEMENTS`` scores). ``out``, when given, is a pair of arrays (for example
    memory-mapped files) the results are written into block by block.
    """
    del num_threads, progress  # used by the fast implementation
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    U = np.asarray(user_factors, dtype=np.float32)
    V = np.asarray(item_factors, dtype=np.float32)
    n_users, n_items = U.shape[0], V.shape[0]
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        if exclude.shape != (n_users, n_items):
            raise ValueError(f"exclude has shape {exclude.shape}, expected {(n_users, n_items)}")
    ids, scores = (
        out
        if out is not None
        else (
            np.empty((n_users, k), dtype=np.int32),
            np.empty((n_users, k), dtype=np.float32),
        )
    )
    block = block_size or max(1, DEFAULT_BLOCK_ELEMENTS // max(n_items, 1))
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        block_scores = U[start:stop] @ V.T
        sub = exclude[start:stop] if exclude is not None else None
        ids[start:stop], scores[start:stop] = select_topk(
            block_scores, k, sub, exclude_items=exclude_items, include_items=include_items
        )
    return ids, scores


def similar_items_all(
    item_factors: np.ndarray,
    k: int,
    *,
    items: np.ndarray | None = None,
    block_size: int | None = None,
    num_threads: int | None = None,
    exclude_items: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine neighbours of each item in ``items`` (default: all), never the item itself."""
    del num_threads, progress
    V = np.asarray(item_factors, dtype=np.float32)
    norms = np.linalg.norm(V, axis=1)
    normed = V / np.where(norms > 0, norms, 1.0)[:, None]
    query = np.arange(V.shape[0]) if items is None else np.asarray(items, dtype=np.int64)
    self_exclusion = sp.csr_matrix(
        (np.ones(len(query), dtype=np.float32), (np.arange(len(query)), query)),
        shape=(len(query), V.shape[0]),
    )
    return recommend_all(
        normed[query], normed, k, self_exclusion, block_size=block_size, exclude_items=exclude_items
    )
