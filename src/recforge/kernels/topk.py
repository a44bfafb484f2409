"""Bounded top-K selection: score tiles with BLAS, reduce them at once, keep k per row.

Every function here computes, for each query row ``r``, the ``k`` best candidates under the
total order *higher score first, then lower item id*:

    top_k(r) = the first k of sorted({(s[r, i], i) : i in C(r), s[r, i] > -inf},
                                     key=(-score, id))

where ``C(r)`` is the candidate set: every item (or the whitelist ``cand``), minus the sorted
global exclusions ``banned``, minus row ``r``'s own exclusions (a CSR row ``excl_indices
[excl_indptr[r]:excl_indptr[r + 1]]``, sorted). NaN scores are never selected. Rows with fewer
than ``k`` candidates are padded with id ``-1`` and score ``-inf``. Because the order is total,
the result does not depend on the order in which candidates are visited, so it is the same for
any tiling and any number of threads.

The selection keeps, per row, a sorted list of the ``k`` best so far; its last entry is the
threshold ``t``. A tile row is first checked whole with one vectorised pass (``any(x >= t)``);
only a row that reaches ``t`` is scanned in chunks of ``CHUNK`` scores, again one vectorised
comparison each, and only a chunk that reaches ``t`` is looked at one score at a time. With
random scores a row of ``n`` candidates sees about ``k (1 + ln(n / k))`` insertions, so after
the first tiles most tile rows stop at the first check: selection costs about 0.2 ns a score
here, some 15 % of the multiply that produced it (1.4 ns a score at 64 factors).

Score tiles are products ``Q[rows] @ V[cols].T`` computed by ``np.dot`` inside the kernels
(numba calls the BLAS ``sgemm`` that SciPy exposes), one tile per numba thread into a buffer that
stays in that core's cache; BLAS must be pinned to one thread around these calls (the wrappers
in :mod:`recforge.topk` do it). Memory per thread is one ``rows x cols`` tile, a gathered
copy of the ``cols`` item vectors and the ``rows x k`` running lists, whatever the catalogue size.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from recforge._numba import kernel, prange
from recforge.kernels.search import contains

__all__ = [
    "CHUNK",
    "cosine_topk_pairs",
    "cosine_topk_pairs_reference",
    "pair_rounds",
    "topk_dense",
    "topk_dense_reference",
    "topk_factors",
    "topk_factors_reference",
]

#: scores compared at once against a row's threshold before any is looked at singly. The
#: comparisons run over a view starting at 0 with a run-time length, the loop shape LLVM turns
#: into AVX compares (a fixed 16-long loop is unrolled and left scalar); 64 balances the
#: vectorised pass against rescanning the chunks that hold a hit.
CHUNK = 64


# ----------------------------------------------------------------------------- building blocks
@kernel()
def _insert(top_s: np.ndarray, top_i: np.ndarray, x: float, item: int) -> None:
    """Insert ``(x, item)`` into the sorted lists ``top_s``/``top_i`` (best first), dropping the
    last entry; the caller has checked that ``(x, item)`` beats that last entry."""
    p = top_s.shape[0] - 1
    while p > 0:
        s = top_s[p - 1]
        if s > x or (s == x and top_i[p - 1] < item):
            break
        top_s[p] = s
        top_i[p] = top_i[p - 1]
        p -= 1
    top_s[p] = x
    top_i[p] = item


@kernel(inline=True)
def _reaches(values: np.ndarray, t: float) -> bool:
    """Whether any of ``values`` reaches ``t``: one flat loop over a whole tile row, which LLVM
    vectorises best (about 0.08 ns a score from cache here); most rows stop at this check."""
    hit = False
    for c in range(values.size):
        hit |= values[c] >= t
    return hit


@kernel(inline=True)
def _reaches_each(values: np.ndarray, thresholds: np.ndarray) -> bool:
    """Whether any ``values[c]`` reaches its own ``thresholds[c]``."""
    hit = False
    for c in range(values.size):
        hit |= values[c] >= thresholds[c]
    return hit


@kernel()
def _select_row(
    row: np.ndarray,
    n: int,
    base: int,
    cand: np.ndarray,
    banned: np.ndarray,
    top_s: np.ndarray,
    top_i: np.ndarray,
) -> None:
    """Merge the scores ``row[:n]`` into one row's running top-k.

    Score ``row[c]`` belongs to item ``base + c`` (or ``cand[base + c]`` when ``cand`` is not
    empty). One vectorised comparison per chunk against the threshold ``t`` (the k-th best so
    far) rejects most chunks.
    """
    k = top_s.shape[0]
    t = top_s[k - 1]
    ti = top_i[k - 1]
    for c0 in range(0, n, CHUNK):
        chunk = row[c0 : min(c0 + CHUNK, n)]
        hit = False
        for c in range(chunk.size):
            hit |= chunk[c] >= t
        if not hit:
            continue
        for c in range(chunk.size):
            x = chunk[c]
            if x >= t:
                item = base + c0 + c if cand.size == 0 else cand[base + c0 + c]
                if (x > t or item < ti) and not contains(banned, 0, banned.size, item):
                    _insert(top_s, top_i, x, item)
                    t = top_s[k - 1]
                    ti = top_i[k - 1]


@kernel()
def _select_columns(
    row: np.ndarray,
    n: int,
    item: int,
    thresholds: np.ndarray,
    col_s: np.ndarray,
    col_i: np.ndarray,
) -> None:
    """Offer item ``item`` with score ``row[c]`` to the running top-k of each of ``n`` columns
    ``c`` (``col_s[c]``/``col_i[c]``); ``thresholds[c]`` mirrors ``col_s[c, k - 1]``."""
    k = col_s.shape[1]
    for c0 in range(0, n, CHUNK):
        c1 = min(c0 + CHUNK, n)
        chunk = row[c0:c1]
        limits = thresholds[c0:c1]
        hit = False
        for c in range(chunk.size):
            hit |= chunk[c] >= limits[c]
        if not hit:
            continue
        for c in range(chunk.size):
            x = chunk[c]
            t = limits[c]
            if x >= t and (x > t or item < col_i[c0 + c, k - 1]):
                _insert(col_s[c0 + c], col_i[c0 + c], x, item)
                limits[c] = col_s[c0 + c, k - 1]


@kernel()
def _exclude_in_tile(
    tile_row: np.ndarray,
    j0: int,
    j1: int,
    cand: np.ndarray,
    excl_indices: np.ndarray,
    cursor: int,
    end: int,
) -> int:
    """Set to ``-inf`` the scores of the row's excluded items that fall in columns ``[j0, j1)``
    (item ids ``j0..j1-1``, or ``cand[j0:j1]``); returns the advanced cursor into the sorted
    exclusion list. Tiles are visited in increasing column order, so the cursor only moves on."""
    if cand.size == 0:
        while cursor < end:
            e = excl_indices[cursor]
            if e >= j1:
                break
            if e >= j0:
                tile_row[e - j0] = -np.inf
            cursor += 1
    else:
        last = cand[j1 - 1]
        while cursor < end:
            e = excl_indices[cursor]
            if e > last:
                break
            p = j0 + np.searchsorted(cand[j0:j1], e)
            if p < j1 and cand[p] == e:
                tile_row[p - j0] = -np.inf
            cursor += 1
    return cursor


@kernel()
def _gather(
    source: np.ndarray, index: np.ndarray, start: int, stop: int, normalize: bool, buffer: np.ndarray
) -> np.ndarray:
    """Rows ``source[index[start:stop]]`` (``source[start:stop]`` when ``index`` is empty), each
    divided by its Euclidean norm when ``normalize`` (a zero row stays zero), into ``buffer``."""
    f = source.shape[1]
    out = buffer[: (stop - start) * f].reshape((stop - start, f))
    for c in range(stop - start):
        src = source[start + c] if index.size == 0 else source[index[start + c]]
        norm = np.float32(1.0)
        if normalize:
            total = 0.0
            for d in range(f):
                total += float(src[d]) * float(src[d])
            if total > 0.0:
                norm = np.float32(np.sqrt(total))
        for d in range(f):
            out[c, d] = src[d] / norm
    return out


# ----------------------------------------------------------------------------- dense score rows
@kernel(parallel=True)
def topk_dense(
    scores: np.ndarray,
    cand: np.ndarray,
    banned: np.ndarray,
    excl_indptr: np.ndarray,
    excl_indices: np.ndarray,
    out_ids: np.ndarray,
    out_scores: np.ndarray,
) -> None:
    """Top-k of each row of a dense ``scores`` block (rows x items) into ``out_ids``/``out_scores``
    (``k`` = their width). Excluded entries of ``scores`` are overwritten with ``-inf``."""
    n_rows, n_items = scores.shape
    k = out_ids.shape[1]
    n_cand = n_items if cand.size == 0 else cand.size
    for r in prange(n_rows):
        top_s = np.full(k, -np.inf, dtype=np.float32)
        top_i = np.full(k, -1, dtype=np.int32)
        row = scores[r]
        for p in range(excl_indptr[r], excl_indptr[r + 1]):
            e = excl_indices[p]
            if 0 <= e < n_items:
                row[e] = -np.inf
        if cand.size == 0:
            _select_row(row, n_cand, 0, cand, banned, top_s, top_i)
        else:
            gathered = np.empty(n_cand, dtype=np.float32)
            for c in range(n_cand):
                gathered[c] = row[cand[c]]
            _select_row(gathered, n_cand, 0, cand, banned, top_s, top_i)
        out_ids[r] = top_i
        out_scores[r] = top_s


def topk_dense_reference(
    scores: np.ndarray,
    k: int,
    cand: np.ndarray,
    banned: np.ndarray,
    excl_indptr: np.ndarray,
    excl_indices: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The specification of :func:`topk_dense` (and of every kernel here): a stable sort."""
    scores = np.array(scores, dtype=np.float32)
    n_rows, n_items = scores.shape
    allowed = np.zeros(n_items, dtype=bool)
    allowed[np.arange(n_items) if len(cand) == 0 else cand] = True
    allowed[banned] = False
    scores[:, ~allowed] = -np.inf
    rows = np.repeat(np.arange(n_rows), np.diff(excl_indptr))
    scores[rows, excl_indices] = -np.inf
    scores[np.isnan(scores)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    valid = top > -np.inf
    ids = np.full((n_rows, k), -1, dtype=np.int32)
    out = np.full((n_rows, k), -np.inf, dtype=np.float32)
    ids[:, : order.shape[1]] = np.where(valid, order, -1)
    out[:, : order.shape[1]] = np.where(valid, top, -np.inf)
    return ids, out


# ----------------------------------------------------------------------------- factor products
@kernel(parallel=True)
def topk_factors(
    query: np.ndarray,
    rows: np.ndarray,
    items: np.ndarray,
    cand: np.ndarray,
    normalize: bool,
    banned: np.ndarray,
    excl_indptr: np.ndarray,
    excl_indices: np.ndarray,
    row_block: int,
    item_block: int,
    out_ids: np.ndarray,
    out_scores: np.ndarray,
) -> None:
    """Top-k of ``s[r, i] = q_r . v_i`` for every query row, blocked.

    ``q_r`` is ``query[rows[r]]`` (``query[r]`` when ``rows`` is empty), ``v_i`` is
    ``items[i]``; with ``normalize`` both are divided by their norms (cosine). Candidates are
    ``cand`` (sorted; empty means every item). Each numba thread takes a block of
    ``row_block`` rows and walks the candidates in tiles of ``item_block``: one ``sgemm`` into
    a reused ``row_block x item_block`` buffer, the row's exclusions set to ``-inf``, then
    :func:`_select_row` on each tile row. Results go to ``out_ids``/``out_scores``
    (``[n_rows, k]``).
    """
    n_rows = out_ids.shape[0]
    k = out_ids.shape[1]
    f = items.shape[1]
    n_cand = items.shape[0] if cand.size == 0 else cand.size
    gather_items = normalize or cand.size > 0
    gather_rows = normalize or rows.size > 0
    n_blocks = (n_rows + row_block - 1) // row_block
    for b in prange(n_blocks):
        r0 = b * row_block
        r1 = min(r0 + row_block, n_rows)
        nr = r1 - r0
        tile_buffer = np.empty(nr * item_block, dtype=np.float32)
        item_buffer = np.empty(item_block * f if gather_items else 0, dtype=np.float32)
        top_s = np.full((nr, k), -np.inf, dtype=np.float32)
        top_i = np.full((nr, k), -1, dtype=np.int32)
        cursor = excl_indptr[r0:r1].copy()
        if gather_rows:
            q = _gather(query, rows, r0, r1, normalize, np.empty(nr * f, dtype=np.float32))
        else:
            q = query[r0:r1]
        for j0 in range(0, n_cand, item_block):
            j1 = min(j0 + item_block, n_cand)
            nc = j1 - j0
            v = _gather(items, cand, j0, j1, normalize, item_buffer) if gather_items else items[j0:j1]
            tile = tile_buffer[: nr * nc].reshape((nr, nc))
            np.dot(q, v.T, tile)
            last = j1 - 1 if cand.size == 0 else cand[j1 - 1]
            for r in range(nr):
                row = tile[r]
                p = cursor[r]
                end = excl_indptr[r0 + r + 1]
                if p < end and excl_indices[p] <= last:
                    cursor[r] = _exclude_in_tile(row, j0, j1, cand, excl_indices, p, end)
                if _reaches(row, top_s[r, k - 1]):
                    _select_row(row, nc, j0, cand, banned, top_s[r], top_i[r])
        out_ids[r0:r1] = top_i
        out_scores[r0:r1] = top_s


def _normalized_reference(x: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64)))
    return x / np.where(norms > 0, norms, 1.0).astype(np.float32)[:, None]


def topk_factors_reference(
    query: np.ndarray,
    rows: np.ndarray,
    items: np.ndarray,
    cand: np.ndarray,
    normalize: bool,
    k: int,
    banned: np.ndarray,
    excl_indptr: np.ndarray,
    excl_indices: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The specification of :func:`topk_factors`: the whole score matrix, then a stable sort."""
    q = query if len(rows) == 0 else query[rows]
    v = items
    if normalize:
        q, v = _normalized_reference(q), _normalized_reference(v)
    return topk_dense_reference(q @ v.T, k, cand, banned, excl_indptr, excl_indices)


# ----------------------------------------------------------------------------- cosine, symmetric
@kernel(parallel=True)
def cosine_topk_pairs(
    items: np.ndarray,
    block: int,
    first: np.ndarray,
    second: np.ndarray,
    banned: np.ndarray,
    out_ids: np.ndarray,
    out_scores: np.ndarray,
) -> None:
    """One round of the all-items cosine neighbours, using the symmetry ``S = S.T``.

    Items are cut into blocks of ``block``; the round holds block pairs ``(first[p],
    second[p])`` that share no block, so the pairs run in parallel without touching the same
    output rows. A pair ``I < J`` computes the tile ``S[I, J]`` once and feeds both sides: each
    tile row to the rows of ``I`` (:func:`_select_row`) and each tile row, against per-column
    thresholds, to the rows of ``J`` (:func:`_select_columns`). A pair ``I == J`` computes the
    diagonal tile with the item itself set to ``-inf``. ``out_ids``/``out_scores``
    (``[n_items, k]``) hold the running lists across rounds and start as ``-1``/``-inf``.
    """
    n, f = items.shape
    k = out_ids.shape[1]
    none = np.empty(0, dtype=np.int64)
    for p in prange(first.size):
        i0 = first[p] * block
        i1 = min(i0 + block, n)
        j0 = second[p] * block
        j1 = min(j0 + block, n)
        ni = i1 - i0
        nj = j1 - j0
        a = _gather(items, none, i0, i1, True, np.empty(ni * f, dtype=np.float32))
        tile = np.empty((ni, nj), dtype=np.float32)
        if i0 == j0:
            np.dot(a, a.T, tile)
            for r in range(ni):
                row = tile[r]
                row[r] = -np.inf
                if _reaches(row, out_scores[i0 + r, k - 1]):
                    _select_row(row, nj, j0, none, banned, out_scores[i0 + r], out_ids[i0 + r])
        else:
            b = _gather(items, none, j0, j1, True, np.empty(nj * f, dtype=np.float32))
            np.dot(a, b.T, tile)
            col_s = out_scores[j0:j1]
            col_i = out_ids[j0:j1]
            thresholds = col_s[:, k - 1].copy()
            for r in range(ni):
                row = tile[r]
                if _reaches(row, out_scores[i0 + r, k - 1]):
                    _select_row(row, nj, j0, none, banned, out_scores[i0 + r], out_ids[i0 + r])
                if _reaches_each(row, thresholds) and not contains(banned, 0, banned.size, i0 + r):
                    _select_columns(row, nj, i0 + r, thresholds, col_s, col_i)


def pair_rounds(n_blocks: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The rounds :func:`cosine_topk_pairs` runs: block pairs ``(first, second)``, ``first <=
    second``, covering every unordered pair and every diagonal ``(I, I)`` exactly once, no block
    twice in a round (the circle method of round-robin tournaments; with an odd count the block
    sitting out a round does its diagonal then, with an even count the diagonals come first)."""
    if n_blocks == 0:
        return
    m = n_blocks + n_blocks % 2
    if m == n_blocks:
        diagonal = np.arange(n_blocks, dtype=np.int64)
        yield diagonal, diagonal
    offsets = np.arange(1, m // 2)
    for r in range(m - 1):
        a = np.concatenate([[r], (r + offsets) % (m - 1)])
        b = np.concatenate([[m - 1], (r - offsets) % (m - 1)])
        b = np.where(b == n_blocks, a, b)  # the bye: the diagonal
        yield np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)


def cosine_topk_pairs_reference(
    items: np.ndarray, k: int, banned: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What all rounds of :func:`cosine_topk_pairs` compute: every item's cosine top-k, never
    itself, never a banned item."""
    n = items.shape[0]
    itself = np.arange(n + 1, dtype=np.int64)
    return topk_factors_reference(
        items, np.zeros(0, np.int64), items, np.zeros(0, np.int64), True, k, banned, itself, itself[:n]
    )
