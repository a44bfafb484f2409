"""Per-row work of the ranking metrics: where top-k lists meet relevant sets, and ideal DCG.

Inputs are a CSR of relevant items (``indptr``, ``indices`` sorted within each row, ``data``
the positive gains) and a ``[n_rows, k]`` array of recommended item ids (``-1`` padding).

* :func:`match_topk`: ``hit[u, j] = recommended[u, j]`` is among row ``u``'s indices, and
  ``gain[u, j]`` its stored value (0 where no hit). A binary search per slot within the row:
  ``O(k log |R_u|)`` per row.
* :func:`ideal_dcg`: ``sum_{r < min(|R_u|, k)} g_(r) / log2(r + 2)`` with ``g_(0) >= g_(1) >= ..``
  the row's gains in descending order (the DCG of the best possible list). A bounded insertion
  buffer of ``k`` gains per row: ``O(|R_u| k)`` at worst.

Rows are independent, so results do not depend on the number of threads (the parallel variant
runs from :data:`PARALLEL_ROWS` rows on). Each kernel has its
NumPy reference twin (``*_reference``), the specification the tests compare against.
"""

from __future__ import annotations

import numpy as np

from recforge._numba import kernel, prange
from recforge.kernels.search import lower_bound

__all__ = ["PARALLEL_ROWS", "ideal_dcg", "ideal_dcg_reference", "match_topk", "match_topk_reference"]

#: Below this many rows the kernels run on one thread: waking a thread pool costs more than
#: the work (and, on a busy machine, can wait for a time slice).
PARALLEL_ROWS = 20_000


@kernel()
def _match_row(
    indices: np.ndarray,
    data: np.ndarray,
    start: int,
    end: int,
    row: np.ndarray,
    hit: np.ndarray,
    gain: np.ndarray,
) -> None:
    for j in range(len(row)):
        item = row[j]
        if item < 0 or start == end:
            continue
        lo = lower_bound(indices, start, end, item)
        if lo < end and indices[lo] == item:
            hit[j] = True
            gain[j] = data[lo]


@kernel()
def _match_topk_serial(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    rec: np.ndarray,
    hit: np.ndarray,
    gain: np.ndarray,
) -> None:
    for u in range(rec.shape[0]):
        _match_row(indices, data, indptr[u], indptr[u + 1], rec[u], hit[u], gain[u])


@kernel(parallel=True)
def _match_topk_parallel(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    rec: np.ndarray,
    hit: np.ndarray,
    gain: np.ndarray,
) -> None:
    for u in prange(rec.shape[0]):
        _match_row(indices, data, indptr[u], indptr[u + 1], rec[u], hit[u], gain[u])


def match_topk(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, recommended: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(hit bool [n, k], gain float64 [n, k])`` (see the module doc)."""
    recommended = np.ascontiguousarray(recommended, dtype=np.int64)
    hit = np.zeros(recommended.shape, dtype=np.bool_)
    gain = np.zeros(recommended.shape, dtype=np.float64)
    run = _match_topk_parallel if len(recommended) >= PARALLEL_ROWS else _match_topk_serial
    run(
        np.asarray(indptr, dtype=np.int64),
        np.asarray(indices, dtype=np.int64),
        np.asarray(data, dtype=np.float64),
        recommended,
        hit,
        gain,
    )
    return hit, gain


def match_topk_reference(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, recommended: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The twin of :func:`match_topk`: one ``searchsorted`` over row-major keys ``u * n + i``."""
    recommended = np.asarray(recommended, dtype=np.int64)
    n_rows = recommended.shape[0]
    width = int(max(indices.max(initial=-1), recommended.max(initial=-1))) + 1
    keys = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(indptr)) * width + indices
    query = np.arange(n_rows, dtype=np.int64)[:, None] * width + recommended
    if keys.size == 0:
        return np.zeros(recommended.shape, dtype=bool), np.zeros(recommended.shape)
    pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    hit = (keys[pos] == query) & (recommended >= 0)
    return hit, np.where(hit, np.asarray(data, dtype=np.float64)[pos], 0.0)


@kernel()
def _ideal_row(data: np.ndarray, start: int, end: int, k: int) -> float:
    top = np.empty(k, dtype=np.float64)  # the largest gains so far, descending
    filled = 0
    for p in range(start, end):
        g = data[p]
        if filled == k and g <= top[k - 1]:
            continue
        j = filled if filled < k else k - 1
        while j > 0 and top[j - 1] < g:
            top[j] = top[j - 1]
            j -= 1
        top[j] = g
        if filled < k:
            filled += 1
    total = 0.0
    for r in range(filled):
        total += top[r] / np.log2(r + 2.0)
    return total


@kernel()
def _ideal_dcg_serial(indptr: np.ndarray, data: np.ndarray, k: int, out: np.ndarray) -> None:
    for u in range(len(out)):
        out[u] = _ideal_row(data, indptr[u], indptr[u + 1], k)


@kernel(parallel=True)
def _ideal_dcg_parallel(indptr: np.ndarray, data: np.ndarray, k: int, out: np.ndarray) -> None:
    for u in prange(len(out)):
        out[u] = _ideal_row(data, indptr[u], indptr[u + 1], k)


def ideal_dcg(indptr: np.ndarray, data: np.ndarray, k: int) -> np.ndarray:
    """Ideal DCG@k per row, float64 ``[n_rows]`` (see the module doc)."""
    out = np.zeros(len(indptr) - 1, dtype=np.float64)
    run = _ideal_dcg_parallel if len(out) >= PARALLEL_ROWS else _ideal_dcg_serial
    run(np.asarray(indptr, dtype=np.int64), np.asarray(data, dtype=np.float64), int(k), out)
    return out


def ideal_dcg_reference(indptr: np.ndarray, data: np.ndarray, k: int) -> np.ndarray:
    """The twin of :func:`ideal_dcg`: sort each row's gains (one lexsort), keep ranks below k."""
    n_rows = len(indptr) - 1
    counts = np.diff(indptr)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), counts)
    data = np.asarray(data, dtype=np.float64)
    order = np.lexsort((-data, rows))  # rows stay in blocks; within a row, gains descending
    rank = np.arange(len(rows), dtype=np.int64) - np.asarray(indptr, dtype=np.int64)[rows]
    top = rank < k
    discount = 1.0 / np.log2(rank[top] + 2.0)
    return np.bincount(rows[top], weights=data[order][top] * discount, minlength=n_rows)
