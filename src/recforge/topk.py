"""Top-K for every user and similar items for every item, in memory bounded by the block size.

Contract of every function here:

* results are ``ids`` int32 ``[n_rows, k]`` and ``scores`` float32 ``[n_rows, k]``, best first;
* ties are broken by the lower item index;
* a row with fewer than ``k`` candidates is padded with id ``-1`` and score ``-inf``; a NaN
  score is never returned;
* ``exclude`` is a CSR rows x items matrix: ``exclude[r, i]`` stored (whatever its value) means
  item ``i`` is never returned for row ``r``; ``exclude_items`` (global, e.g. sold out) are
  never returned for any row; ``include_items``, when given, is the only candidate set;
* ``eligibility`` (a catalog's :class:`~recforge.catalog.Eligibility` over the same items) drops
  unavailable items, and with ``categories`` keeps only the items of any of them.

How (:mod:`recforge.kernels.topk`): each numba thread scores a block of ``block_size`` rows
against a tile of ``item_block_size`` items with one ``sgemm`` into a buffer that stays in its
core's cache, and reduces the tile at once into the rows' running top-k; no rows x items matrix
is ever held. Memory besides the inputs and the ``[n_rows, k]`` results is, per thread, one
tile (``TILE_BYTES`` by default), the gathered item vectors of a tile and ``block_size x k``
running lists: independent of the catalogue size. Results can be written straight into
memory-mapped ``.npy`` files (:func:`recommend_all_to_files`, or ``out=``), so results larger
than memory work too.

Threads: ``num_threads`` numba threads (``0``: all cores, as for every model), each calling BLAS
with BLAS pinned to one thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recforge._numba import dynamic_schedule, thread_limits
from recforge._numba import num_threads as resolve_threads
from recforge._progress import progress as progress_bar
from recforge._validation import check_positive_int
from recforge.catalog.eligibility import Eligibility
from recforge.kernels.topk import cosine_topk_pairs, pair_rounds, topk_dense, topk_factors

__all__ = [
    "TILE_BYTES",
    "recommend_all",
    "recommend_all_to_files",
    "select_topk",
    "similar_items_all",
    "similar_items_all_to_files",
]

#: bytes of scores one thread holds at once (one tile); the default tile shape derives from it
TILE_BYTES = 1 << 20
#: rows per block for recommend_all, and the side of the square tiles of similar_items_all
DEFAULT_ROW_BLOCK = 512
DEFAULT_SIMILAR_BLOCK = 512
#: blocks per thread handed to one kernel call (progress and output stream per call)
BLOCKS_PER_CALL = 32

#: scores a pass computes before it shows a progress bar by itself (about a second here)
PROGRESS_SCORES = 1 << 30

_NONE = np.zeros(0, dtype=np.int64)


def select_topk(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | sp.csr_array | None = None,
    *,
    exclude_items: np.ndarray | None = None,
    include_items: np.ndarray | None = None,
    num_threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of each row of a dense score block (rows x items), per the module contract.

    ``scores`` may be modified in place (excluded entries become ``-inf``).
    """
    k = check_positive_int("k", k)
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-d array, got shape {scores.shape}")
    n_rows, n_items = scores.shape
    if not scores.flags.writeable:
        scores = scores.copy()
    indptr, indices = _exclusions(exclude, n_rows, n_items)
    cand, banned = _candidates(n_items, include_items, exclude_items)
    ids = np.empty((n_rows, k), dtype=np.int32)
    top = np.empty((n_rows, k), dtype=np.float32)
    if len(banned) == n_items:  # no candidate at all
        ids[...], top[...] = -1, -np.inf
    elif n_rows:
        with thread_limits(num_threads):
            topk_dense(scores, cand, banned, indptr.astype(np.int64, copy=False), indices, ids, top)
    return ids, top


def recommend_all(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | sp.csr_array | None = None,
    *,
    block_size: int | None = None,
    item_block_size: int | None = None,
    num_threads: int = 0,
    exclude_items: np.ndarray | None = None,
    include_items: np.ndarray | None = None,
    eligibility: Eligibility | None = None,
    categories: str | Sequence[str] | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items by ``s[u, i] = user_factors[u] . item_factors[i]`` for every user.

    ``exclude`` is a users x items CSR matrix (e.g. the items each user has seen).
    ``block_size`` is the number of users a thread scores at once (default
    ``DEFAULT_ROW_BLOCK``) and ``item_block_size`` the number of items per tile (default: as
    many as fit ``TILE_BYTES`` of scores). ``out``, when given, is a pair of C-contiguous arrays
    ``(int32 [n_users, k], float32 [n_users, k])``, for example ``np.lib.format.open_memmap``
    files, the results are written into block by block. ``progress``: a progress bar on stderr
    (``None``: when stderr is a terminal and the pass scores at least ``PROGRESS_SCORES``).
    """
    k = check_positive_int("k", k)
    users = _factors(user_factors, "user_factors")
    items = _factors(item_factors, "item_factors")
    if users.shape[1] != items.shape[1]:
        raise ValueError(f"user_factors have {users.shape[1]} factors, item_factors {items.shape[1]}")
    n_users, n_items = users.shape[0], items.shape[0]
    indptr, indices = _exclusions(exclude, n_users, n_items)
    include_items, exclude_items = _eligible(n_items, eligibility, categories, include_items, exclude_items)
    cand, banned = _candidates(n_items, include_items, exclude_items)
    ids, scores = _outputs(out, n_users, k)
    if len(banned) == n_items:  # no candidate at all
        ids[...], scores[...] = -1, -np.inf
        return ids, scores
    threads = resolve_threads(num_threads)
    rows, cols = _tile_shape(block_size, item_block_size, n_users, items.shape[1], k, threads)
    with (
        thread_limits(threads, blas_threads=1),
        dynamic_schedule(),
        progress_bar("recommend", n_users, _show(progress, n_users * n_items)) as bar,
    ):
        for start, stop in _chunks(n_users, rows * threads * BLOCKS_PER_CALL):
            topk_factors(
                users[start:stop],
                _NONE,
                items,
                cand,
                False,
                banned,
                indptr[start : stop + 1].astype(np.int64),
                indices,
                rows,
                cols,
                np.asarray(ids[start:stop]),
                np.asarray(scores[start:stop]),
            )
            bar.advance(stop - start)
    return ids, scores


def similar_items_all(
    item_factors: np.ndarray,
    k: int,
    *,
    items: np.ndarray | None = None,
    block_size: int | None = None,
    item_block_size: int | None = None,
    num_threads: int = 0,
    exclude_items: np.ndarray | None = None,
    include_items: np.ndarray | None = None,
    eligibility: Eligibility | None = None,
    categories: str | Sequence[str] | None = None,
    symmetric: bool | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine neighbours ``cos(i, j) = v_i . v_j / (|v_i| |v_j|)`` of each item in ``items``
    (default: all), never the item itself (a zero vector has cosine 0 with everything).

    ``symmetric`` (default: when all items are asked for, with no whitelist) computes each tile
    of the symmetric cosine matrix once and feeds both its rows and its columns, halving the
    multiply; items go in square blocks of ``block_size`` (default ``DEFAULT_SIMILAR_BLOCK``) and
    every round of pairs updates rows all over the output, so with ``out`` memory-mapped the
    whole result should fit in the page cache; ``symmetric=False`` streams the output block by
    block (as :func:`recommend_all`) instead. Other arguments as in :func:`recommend_all`.
    """
    k = check_positive_int("k", k)
    vectors = _factors(item_factors, "item_factors")
    n_items = vectors.shape[0]
    query = None if items is None else _item_array(items, n_items, "items")
    include_items, exclude_items = _eligible(n_items, eligibility, categories, include_items, exclude_items)
    if symmetric is None:
        symmetric = query is None and include_items is None
    if symmetric and (query is not None or include_items is not None):
        raise ValueError(
            "symmetric=True needs all items as queries and candidates (no items=/include_items=)"
        )
    cand, banned = _candidates(n_items, include_items, exclude_items)
    n_rows = n_items if query is None else len(query)
    ids, scores = _outputs(out, n_rows, k)
    threads = resolve_threads(num_threads)
    ids[...], scores[...] = -1, -np.inf  # the symmetric rounds' starting lists
    if len(banned) == n_items:  # no candidate at all
        return ids, scores
    if symmetric:
        block = DEFAULT_SIMILAR_BLOCK if block_size is None else check_positive_int("block_size", block_size)
        rounds = list(pair_rounds((n_items + block - 1) // block))
        with (
            thread_limits(threads, blas_threads=1),
            dynamic_schedule(),
            progress_bar("similar items", len(rounds), _show(progress, n_items * n_items // 2)) as bar,
        ):
            for first, second in rounds:
                cosine_topk_pairs(vectors, block, first, second, banned, np.asarray(ids), np.asarray(scores))
                bar.advance()
        return ids, scores
    rows, cols = _tile_shape(block_size, item_block_size, n_rows, vectors.shape[1], k, threads)
    with (
        thread_limits(threads, blas_threads=1),
        dynamic_schedule(),
        progress_bar("similar items", n_rows, _show(progress, n_rows * n_items)) as bar,
    ):
        for start, stop in _chunks(n_rows, rows * threads * BLOCKS_PER_CALL):
            chunk = np.arange(start, stop, dtype=np.int64) if query is None else query[start:stop]
            topk_factors(
                vectors,
                chunk,
                vectors,
                cand,
                True,
                banned,
                np.arange(stop - start + 1, dtype=np.int64),
                chunk.astype(np.int32),  # each row excludes its own item
                rows,
                cols,
                np.asarray(ids[start:stop]),
                np.asarray(scores[start:stop]),
            )
            bar.advance(stop - start)
    return ids, scores


def recommend_all_to_files(
    directory: str | Path,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | sp.csr_array | None = None,
    *,
    name: str = "recommend",
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`recommend_all` streamed into ``<directory>/<name>_ids.npy`` and ``<name>_scores.npy``.

    The files are written under temporary names and renamed when complete, so a reader never
    sees a half-written result; returns them memory-mapped read-only.
    """
    n_users = np.shape(user_factors)[0]
    with _npy_pair(directory, name, n_users, check_positive_int("k", k)) as out:
        recommend_all(user_factors, item_factors, k, exclude, out=out, **options)
    return _load_pair(directory, name)


def similar_items_all_to_files(
    directory: str | Path, item_factors: np.ndarray, k: int, *, name: str = "similar", **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`similar_items_all` streamed into ``<directory>/<name>_ids.npy`` and
    ``<name>_scores.npy`` (as :func:`recommend_all_to_files`)."""
    items = options.get("items")
    n_rows = np.shape(item_factors)[0] if items is None else len(np.atleast_1d(items))
    with _npy_pair(directory, name, n_rows, check_positive_int("k", k)) as out:
        similar_items_all(item_factors, k, out=out, **options)
    return _load_pair(directory, name)


# ----------------------------------------------------------------------------- helpers
def _factors(x: np.ndarray, name: str) -> np.ndarray:
    """A C-contiguous float32 ``[n, factors]`` view (a copy only if the input is not one)."""
    array = np.ascontiguousarray(x, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array, got shape {array.shape}")
    if array.shape[1] == 0:
        raise ValueError(f"{name} must have at least one factor column")
    return array


def _item_array(values: Any, n_items: int, name: str) -> np.ndarray:
    array = np.atleast_1d(np.asarray(values))
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer item indices, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= n_items:
        raise ValueError(f"{name} holds an index outside [0, {n_items})")
    return array.astype(np.int64).ravel()


def _eligible(
    n_items: int,
    eligibility: Eligibility | None,
    categories: str | Sequence[str] | None,
    include_items: np.ndarray | None,
    exclude_items: np.ndarray | None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(include_items, exclude_items)`` with a catalog's eligibility folded in."""
    if eligibility is None:
        if categories is not None:
            raise ValueError("categories= needs eligibility= (the catalog's, over the same items)")
        return include_items, exclude_items
    if eligibility.n_items != n_items:
        raise ValueError(f"eligibility covers {eligibility.n_items} items, the factors {n_items}")
    if categories is None:
        unavailable = eligibility.unavailable()
        if exclude_items is not None:
            unavailable = np.union1d(unavailable, _item_array(exclude_items, n_items, "exclude_items"))
        return include_items, unavailable
    allowed = eligibility.items(categories)
    if include_items is not None:
        allowed = np.intersect1d(allowed, _item_array(include_items, n_items, "include_items"))
    if not len(allowed):  # nothing eligible: every item is banned
        return None, np.arange(n_items, dtype=np.int64)
    return allowed, exclude_items


def _candidates(
    n_items: int, include_items: np.ndarray | None, exclude_items: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(cand, banned)``: the sorted whitelist minus the exclusions (empty: every item), and the
    sorted global exclusions left to check at selection time (empty when folded into ``cand``).
    A whitelist that leaves nothing comes back as ``cand`` empty and every item banned."""
    banned = (
        _NONE if exclude_items is None else np.unique(_item_array(exclude_items, n_items, "exclude_items"))
    )
    if include_items is None:
        return _NONE, banned
    cand = np.unique(_item_array(include_items, n_items, "include_items"))
    if len(banned):
        cand = cand[~np.isin(cand, banned)]
    if len(cand) == 0:
        return _NONE, np.arange(n_items, dtype=np.int64)
    return cand, _NONE


def _exclusions(
    exclude: sp.csr_matrix | sp.csr_array | None, n_rows: int, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(indptr, indices)`` of the per-row exclusions, indices int32 (one compiled kernel)
    and sorted within each row."""
    if exclude is None:
        return np.zeros(n_rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)
    if not sp.issparse(exclude):
        raise TypeError(f"exclude must be a scipy sparse matrix, got {type(exclude).__name__}")
    matrix = sp.csr_matrix(exclude)
    if matrix.shape != (n_rows, n_items):
        raise ValueError(f"exclude has shape {matrix.shape}, expected {(n_rows, n_items)}")
    if not matrix.has_sorted_indices:
        matrix = matrix.sorted_indices()
    return matrix.indptr, matrix.indices.astype(np.int32, copy=False)


def _outputs(out: tuple[np.ndarray, np.ndarray] | None, n_rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    if out is None:
        return np.empty((n_rows, k), dtype=np.int32), np.empty((n_rows, k), dtype=np.float32)
    ids, scores = out
    for array, dtype, what in ((ids, np.int32, "ids"), (scores, np.float32, "scores")):
        if not isinstance(array, np.ndarray) or array.shape != (n_rows, k) or array.dtype != dtype:
            raise ValueError(f"out {what} must be a {np.dtype(dtype).name} array of shape {(n_rows, k)}")
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError(f"out {what} must be C-contiguous and writeable")
    return ids, scores


def _tile_shape(
    block_size: int | None, item_block_size: int | None, n_rows: int, factors: int, k: int, threads: int
) -> tuple[int, int]:
    """Rows per block and items per tile.

    By default a block has ``DEFAULT_ROW_BLOCK`` rows, fewer when that would leave a thread
    without a block or the block's running lists (``rows x k``) would pass ``TILE_BYTES``, and a
    tile holds ``TILE_BYTES`` of scores, with at most ``TILE_BYTES`` of gathered item vectors:
    sizes from a memory budget, never from the catalogue.
    """
    if block_size is None:
        rows = min(DEFAULT_ROW_BLOCK, -(-n_rows // threads), TILE_BYTES // (8 * k))
        rows = max(1, rows)
    else:
        rows = check_positive_int("block_size", block_size)
    if item_block_size is not None:
        return rows, check_positive_int("item_block_size", item_block_size)
    return rows, max(16, min(TILE_BYTES // (4 * rows), TILE_BYTES // (4 * factors)))


def _show(progress: bool | None, scores: int) -> bool | None:
    """``progress`` as given; ``None`` (a bar on a terminal) becomes ``False`` for short passes
    (a single user's request should not flash a bar)."""
    if progress is None and scores < PROGRESS_SCORES:
        return False
    return progress


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


class _npy_pair:
    """Context: ``(ids, scores)`` ``.npy`` memory maps under temporary names, renamed on success."""

    def __init__(self, directory: str | Path, name: str, n_rows: int, k: int) -> None:
        self.directory = Path(directory)
        self.name = name
        self.shape = (n_rows, k)

    def _path(self, part: str, suffix: str = "") -> Path:
        return self.directory / f"{self.name}_{part}.npy{suffix}"

    def __enter__(self) -> tuple[np.ndarray, np.ndarray]:
        self.directory.mkdir(parents=True, exist_ok=True)
        open_memmap = np.lib.format.open_memmap
        self.arrays = (
            open_memmap(self._path("ids", ".partial"), mode="w+", dtype=np.int32, shape=self.shape),
            open_memmap(self._path("scores", ".partial"), mode="w+", dtype=np.float32, shape=self.shape),
        )
        return self.arrays

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        for array in self.arrays:
            array.flush()
        del self.arrays
        for part in ("ids", "scores"):
            if kind is None:
                os.replace(self._path(part, ".partial"), self._path(part))
            else:
                self._path(part, ".partial").unlink(missing_ok=True)


def _load_pair(directory: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    directory = Path(directory)
    return (
        np.load(directory / f"{name}_ids.npy", mmap_mode="r"),
        np.load(directory / f"{name}_scores.npy", mmap_mode="r"),
    )
