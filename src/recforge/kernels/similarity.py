"""Item-item products: cosine top-N neighbours without a dense items x items matrix, and the
dense Gram matrix ``W^T W`` (EASE).

For a users x items matrix ``W`` the cosine of items ``i`` and ``j`` is
``S_ij = (W[:, i] . W[:, j]) / (|W[:, i]| |W[:, j]|)``. :func:`column_dot_topn` takes columns
already scaled to unit length (:func:`column_norms`, :func:`scale_columns`), so ``S_ij`` is a
plain dot product, and keeps for each item ``i`` the ``n`` largest positive ``S_ij`` with
``j != i`` (ties: the lower ``j`` first).

How: for item ``i``, walk its users ``u`` (the CSC of ``W``) and each of their items ``j`` (the
CSR), adding ``W_ui W_uj`` into a dense float64 accumulator of length ``n_items``; the touched
entries (found with a per-item stamp) go through a bounded heap of size ``n``; the accumulator
is cleared along the touched list. The work is ``sum_u |row u|^2``, the memory one accumulator
per chunk of items. Items are split into chunks of equal work (:func:`work_chunks`) that run in
parallel.

The kernel computes the lists of any subset of the items (``targets``) from the rows of the
users who have them: Spark's ItemKNN (:mod:`recforge.spark.itemknn`) runs it per block of
items on the rows shipped to that block. ``S_ij`` is summed over ``i``'s users in increasing
order either way, so a block gets the same bits as the whole.

:func:`column_gram` walks the same way into a dense float64 accumulator per item and writes
the item's row of the lower triangle of ``W^T W``: the Gram matrix EASE inverts, for half of
``sum_u |row u|^2`` multiply-adds (each row of ``W`` is read up to the item only) and no sparse
intermediate; :func:`item_gram` mirrors it into the full matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recforge._numba import kernel, prange

__all__ = [
    "balanced_bounds",
    "column_dot_topn",
    "column_dot_topn_reference",
    "column_gram",
    "column_gram_reference",
    "column_norms",
    "cosine_topn",
    "cosine_topn_reference",
    "item_gram",
    "mirror_lower",
    "neighbour_matrix",
    "scale_columns",
    "work_chunks",
]


@kernel()
def _worse(score_a, id_a, score_b, id_b):
    """Whether neighbour ``a`` ranks below ``b``: lower score, or the same score and higher id."""
    return score_a < score_b or (score_a == score_b and id_a > id_b)


@kernel()
def _sift_down(scores, ids, size, pos):
    """Restore the heap (worst at the root) below ``pos``."""
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        if child + 1 < size and _worse(scores[child + 1], ids[child + 1], scores[child], ids[child]):
            child += 1
        if not _worse(scores[child], ids[child], scores[pos], ids[pos]):
            return
        scores[pos], scores[child] = scores[child], scores[pos]
        ids[pos], ids[child] = ids[child], ids[pos]
        pos = child


@kernel(parallel=True)
def column_dot_topn(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_data: np.ndarray,
    targets: np.ndarray,
    n_columns: int,
    n_neighbors: int,
    chunk_bounds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n_neighbors`` columns by dot product for the columns ``targets`` of a CSR matrix.

    ``indptr/indices/data`` is the users x items CSR (``n_columns`` items); ``t_*`` holds the
    target columns as rows (CSR): row ``r`` is column ``targets[r]``, its indices the CSR's
    rows in increasing order (for every column, ``t_*`` is the CSC, its transpose in CSR form).
    Returns ``ids`` int32 and ``scores`` float32, both ``[len(targets), n_neighbors]``, best
    first, only positive dot products, never the column itself, padded with ``-1`` / ``0``.
    Targets ``chunk_bounds[c]:chunk_bounds[c + 1]`` form chunk ``c``.
    """
    n_targets = t_indptr.shape[0] - 1
    ids = np.full((n_targets, n_neighbors), -1, np.int32)
    scores = np.zeros((n_targets, n_neighbors), np.float32)
    n_chunks = chunk_bounds.shape[0] - 1
    for c in prange(n_chunks):
        acc = np.zeros(n_columns, np.float64)
        stamp = np.full(n_columns, -1, np.int64)  # stamp[j] == r: j already touched for target r
        touched = np.empty(n_columns, np.int64)
        heap_scores = np.empty(max(n_neighbors, 1), np.float64)
        heap_ids = np.empty(max(n_neighbors, 1), np.int64)
        for r in range(chunk_bounds[c], chunk_bounds[c + 1]):
            i = targets[r]
            n_touched = 0
            for p in range(t_indptr[r], t_indptr[r + 1]):
                # unsigned indices: no negative-index wraparound test in the hot loop (2x)
                u = np.uint64(t_indices[p])
                weight = np.float64(t_data[p])
                for q in range(indptr[u], indptr[u + np.uint64(1)]):
                    j = np.uint64(indices[q])
                    if stamp[j] != r:
                        stamp[j] = r
                        touched[n_touched] = j
                        n_touched += 1
                    acc[j] += weight * data[q]
            size = 0
            for t in range(n_touched):
                j = touched[t]
                s = acc[j]
                acc[j] = 0.0
                if j == i or not s > 0.0 or n_neighbors == 0:
                    continue
                if size < n_neighbors:
                    # push: sift up from the end
                    pos = size
                    size += 1
                    heap_scores[pos] = s
                    heap_ids[pos] = j
                    while pos > 0:
                        parent = (pos - 1) // 2
                        if not _worse(heap_scores[pos], heap_ids[pos], heap_scores[parent], heap_ids[parent]):
                            break
                        heap_scores[pos], heap_scores[parent] = heap_scores[parent], heap_scores[pos]
                        heap_ids[pos], heap_ids[parent] = heap_ids[parent], heap_ids[pos]
                        pos = parent
                elif _worse(heap_scores[0], heap_ids[0], s, j):
                    heap_scores[0] = s
                    heap_ids[0] = j
                    _sift_down(heap_scores, heap_ids, size, 0)
            # pop worst-first into the row from the back: best ends up first
            while size > 0:
                size -= 1
                ids[r, size] = heap_ids[0]
                scores[r, size] = heap_scores[0]
                heap_scores[0] = heap_scores[size]
                heap_ids[0] = heap_ids[size]
                _sift_down(heap_scores, heap_ids, size, 0)
    return ids, scores


def column_dot_topn_reference(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_data: np.ndarray,
    targets: np.ndarray,
    n_columns: int,
    n_neighbors: int,
    chunk_bounds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`column_dot_topn` from the dense ``W.T @ W`` (float64)."""
    n_users = len(indptr) - 1
    W = sp.csr_matrix((data, indices, indptr), shape=(n_users, n_columns)).toarray().astype(np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    dots = W[:, targets].T @ W
    dots[np.arange(len(targets)), targets] = 0.0
    ids = np.full((len(targets), n_neighbors), -1, np.int32)
    scores = np.zeros((len(targets), n_neighbors), np.float32)
    order = np.argsort(-dots, axis=1, kind="stable")[:, :n_neighbors]
    top = np.take_along_axis(dots, order, axis=1)
    keep = top > 0
    width = order.shape[1]
    ids[:, :width] = np.where(keep, order, -1)
    scores[:, :width] = np.where(keep, top, 0.0)
    return ids, scores


def column_norms(indices: np.ndarray, data: np.ndarray, n_columns: int) -> np.ndarray:
    """The L2 norm of every column of a CSR matrix's entries (``indices``, ``data``), float64;
    each column's squares summed in the order its entries come (row order for a CSR)."""
    return np.sqrt(np.bincount(indices, weights=np.square(data, dtype=np.float64), minlength=n_columns))


def scale_columns(indices: np.ndarray, data: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """The entries divided by their column's norm, as float32."""
    return (data / norms[indices]).astype(np.float32)


def _unit_columns(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``matrix`` (float32) with every non-empty column scaled to unit L2 norm."""
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    m.eliminate_zeros()
    m.data = scale_columns(m.indices, m.data, column_norms(m.indices, m.data, m.shape[1]))
    return m


def balanced_bounds(work: np.ndarray, chunks: int) -> np.ndarray:
    """Bounds of at most ``chunks`` runs of consecutive targets of about equal ``work``."""
    n = len(work)
    cumulative = np.concatenate([[0.0], np.cumsum(work)])
    marks = np.linspace(0.0, cumulative[-1], max(1, min(chunks, n)) + 1)
    bounds = np.unique(np.searchsorted(cumulative, marks)).astype(np.int64)
    bounds[0], bounds[-1] = 0, n
    return bounds


def cosine_topn(matrix: sp.csr_matrix, n_neighbors: int, chunks: int = 64) -> sp.csr_matrix:
    """The ``n_items x n_items`` CSR of each item's top-``n_neighbors`` cosine neighbours.

    Row ``i`` holds item ``i``'s neighbours ``j`` (never ``i``, only ``S_ij > 0``) with value
    ``S_ij`` (float32), column indices sorted. ``matrix`` is users x items with non-negative
    values; it is split into ``chunks`` pieces of equal work for the parallel kernel.
    """
    if matrix.nnz and matrix.data.min() < 0:
        raise ValueError("cosine_topn needs a non-negative matrix")
    unit = _unit_columns(matrix)
    unit.sort_indices()
    transposed = sp.csr_matrix(unit.T)
    transposed.sort_indices()
    n_items = unit.shape[1]
    n = min(int(n_neighbors), max(n_items - 1, 0))
    t = transposed
    ids, scores = column_dot_topn(
        unit.indptr,
        unit.indices,
        unit.data,
        t.indptr,
        t.indices,
        t.data,
        np.arange(n_items, dtype=np.int64),
        n_items,
        n,
        work_chunks(unit, chunks),
    )
    return neighbour_matrix(ids, scores, n_items)


def work_chunks(matrix: sp.csr_matrix, chunks: int, lower: bool = False) -> np.ndarray:
    """Boundaries (int64) of at most ``chunks`` ranges of items of about equal work for the
    walks of this module (:func:`balanced_bounds`): item ``i`` costs ``1 +`` the sum over its
    users of the length of their rows (``lower``: of the rows' prefixes up to ``i``; indices
    sorted)."""
    n_items = matrix.shape[1]
    lengths = np.diff(matrix.indptr)
    users_of_entry = np.repeat(np.arange(matrix.shape[0]), lengths)
    if lower:
        cost = (np.arange(matrix.nnz) - matrix.indptr[users_of_entry] + 1).astype(np.float64)
    else:
        cost = lengths.astype(np.float64)[users_of_entry]
    work = np.bincount(matrix.indices, weights=cost, minlength=n_items) + 1.0
    return balanced_bounds(work, chunks)


@kernel(parallel=True)
def column_gram(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_data: np.ndarray,
    out: np.ndarray,
    chunk_bounds: np.ndarray,
) -> None:
    """The lower triangle of ``W^T W`` into ``out`` (``n_items x n_items``; entries above the
    diagonal are left as they are) for the CSR ``W`` (``indptr``, ..., indices sorted) and its
    transpose's CSR (``t_*``). Row ``i``: ``sum_u W_ui W_uj`` for ``j <= i``, accumulated in
    float64 in the order of ``i``'s users, then of each row's entries (deterministic)."""
    n_items = out.shape[1]
    for c in prange(len(chunk_bounds) - 1):
        acc = np.zeros(n_items, np.float64)
        for i in range(chunk_bounds[c], chunk_bounds[c + 1]):
            for p in range(t_indptr[i], t_indptr[i + 1]):
                u = t_indices[p]
                w = np.float64(t_data[p])
                for q in range(indptr[u], indptr[u + 1]):
                    j = indices[q]
                    if j > i:
                        break
                    acc[j] += w * data[q]
            for j in range(i + 1):
                out[i, j] = acc[j]
                acc[j] = 0.0


def column_gram_reference(matrix: sp.csr_matrix) -> np.ndarray:
    """:func:`item_gram` by a sparse product in float64."""
    m = sp.csr_matrix(matrix, dtype=np.float64)
    return np.asarray((m.T @ m).toarray())


def item_gram(matrix: sp.csr_matrix, chunks: int = 64, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """The dense ``n_items x n_items`` Gram matrix ``W^T W`` of the users x items ``matrix``, in
    ``dtype`` (float64 sums): its lower triangle by :func:`column_gram` over ``chunks`` ranges of
    equal work, mirrored onto the upper one."""
    m = sp.csr_matrix(matrix)
    m.sort_indices()
    t = sp.csr_matrix(m.T)
    t.sort_indices()
    n = m.shape[1]
    out = np.empty((n, n), dtype=dtype)
    bounds = work_chunks(m, chunks, lower=True)
    column_gram(m.indptr, m.indices, m.data, t.indptr, t.indices, t.data, out, bounds)
    mirror_lower(out)
    return out


def mirror_lower(matrix: np.ndarray, block: int = 1024) -> None:
    """Copy the lower triangle of the square ``matrix`` onto its upper one, in place, by blocks
    of rows (no full-size temporary)."""
    n = len(matrix)
    for start in range(0, n, block):
        stop = min(start + block, n)
        matrix[start:stop, stop:] = matrix[stop:, start:stop].T
        square = matrix[start:stop, start:stop]
        upper = np.triu_indices(stop - start, 1)
        square[upper] = square.T[upper]


def cosine_topn_reference(matrix: sp.csr_matrix, n_neighbors: int) -> sp.csr_matrix:
    """:func:`cosine_topn` from the dense cosine matrix."""
    unit = _unit_columns(matrix)
    t = sp.csr_matrix(unit.T)
    n_items = unit.shape[1]
    n = min(int(n_neighbors), max(n_items - 1, 0))
    bounds = np.array([0, n_items], np.int64)
    ids, scores = column_dot_topn_reference(
        unit.indptr,
        unit.indices,
        unit.data,
        t.indptr,
        t.indices,
        t.data,
        np.arange(n_items, dtype=np.int64),
        n_items,
        n,
        bounds,
    )
    return neighbour_matrix(ids, scores, n_items)


def neighbour_matrix(ids: np.ndarray, scores: np.ndarray, n_items: int) -> sp.csr_matrix:
    """The items x items CSR of neighbour lists ``ids`` / ``scores`` ``[n_items, n]`` (row ``i``:
    item ``i``'s neighbours, padding ``-1`` dropped), column indices sorted, float32."""
    keep = ids >= 0
    rows = np.nonzero(keep)[0]
    out = sp.csr_matrix((scores[keep], (rows, ids[keep])), shape=(n_items, n_items), dtype=np.float32)
    out.sort_indices()
    return out
