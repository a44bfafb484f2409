"""BPR kernels: stochastic gradient ascent on BPR-Opt (Rendle et al. 2009) over CSR arrays.

Factor layout (as in ``implicit``): a user row is ``X[u] = (w_u, 1)`` and an item row is
``Y[i] = (h_i, b_i)``, so ``X[u] . Y[i] = w_u . h_i + b_i`` is the score with an item bias and
the last user column stays 1. For a triple ``(u, i, j)`` (``i`` a positive of ``u``, ``j`` a
negative) let ``x = X[u] . (Y[i] - Y[j])`` and ``z = 1 - sigma(x) = 1 / (1 + exp(x))``. One SGD
step ascends ``ln sigma(x) - (lambda / 2) (|w_u|^2 + |Y[i]|^2 + |Y[j]|^2)``::

    w_u += lr * ( z * (h_i - h_j) - lambda * w_u)
    h_i += lr * ( z * w_u         - lambda * h_i),      b_i += lr * ( z - lambda * b_i)
    h_j += lr * (-z * w_u         - lambda * h_j),      b_j += lr * (-z - lambda * b_j)

(right-hand sides use the values before the step).

Sampling. The positive is a uniformly random stored entry ``(u, i)`` of the CSR, so users are
drawn in proportion to their number of items (as ``implicit`` does). The negative ``j`` is drawn
uniformly from the candidate items and drawn again while ``u`` has interacted with it (a
binary search in ``u``'s sorted row); after ``MAX_NEGATIVE_TRIES`` draws the triple is skipped
and counted. The result is uniform over the items ``u`` has not interacted with.

Random numbers come from splitmix64 streams, one ``uint64`` state per stream, so a stream's
draws are fixed by its seed. A stream works in batches of ``BATCH`` triples: it draws all their
positives, then each one's negative, then runs their steps in order (the draws only read the
CSR, so this changes no result, and the independent memory loads of a batch overlap). Steps
run in the factors' precision (float32 by default). Two schedules:

* :func:`bpr_epoch_hogwild`: ``len(seeds)`` streams (one per thread) each draw
  ``samples / len(seeds)`` triples and update the shared factors without locks (Hogwild!,
  Niu et al. 2011). Fast; the result depends on the number of streams and on thread timing.
* :func:`bpr_epoch_blocked`: stratified SGD (Gemulla et al. 2011). Users and items are split
  into ``P`` blocks; the epoch runs ``P`` strata one after another, and stratum ``s`` processes
  the ``P`` cells ``(user block b, item block (b + s) mod P)`` in parallel, each cell with its
  own seeded stream, its positives from the cell's entries and its negatives from the cell's
  item block. Cells of one stratum share no user and no item, so the result is the same for
  any number of threads. (The caller redraws the blocks every epoch, so over epochs every
  pair of items can meet.)

Every kernel has a NumPy/Python twin ``<name>_reference`` computing the same thing slowly.
"""

from __future__ import annotations

import numpy as np

from recforge._numba import kernel, prange
from recforge.kernels.search import contains

__all__ = [
    "BATCH",
    "MAX_NEGATIVE_TRIES",
    "bpr_epoch_blocked",
    "bpr_epoch_blocked_reference",
    "bpr_epoch_hogwild",
    "bpr_epoch_hogwild_reference",
    "bpr_loss",
    "bpr_loss_reference",
    "group_by_cell",
    "group_by_cell_reference",
    "sample_triples",
    "sample_triples_reference",
]

#: Draws of a negative before a triple is given up (only matters for users who have seen
#: nearly every candidate item).
MAX_NEGATIVE_TRIES = 32
#: Triples drawn at once before their SGD steps run (see ``_draw_batch``).
BATCH = 64

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S32 = np.uint64(32)


# random numbers ------------------------------------------------------------------------------
@kernel()
def _splitmix64(state):
    """Advance a splitmix64 state; returns ``(new_state, 64 random bits)``."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return state, z ^ (z >> _S31)


@kernel()
def _bounded(z, n):
    """Map 64 random bits to ``[0, n)`` for ``n < 2**32``: ``((z >> 32) * n) >> 32``."""
    return np.int64(((z >> _S32) * np.uint64(n)) >> _S32)


_MASK64 = (1 << 64) - 1


def _splitmix64_reference(state: int) -> tuple[int, int]:
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def _bounded_reference(z: int, n: int) -> int:
    return ((z >> 32) * n) >> 32


# shared pieces ---------------------------------------------------------------------------------
@kernel()
def _draw_batch(
    state,
    m,
    indptr,
    indices,
    row_of_nnz,
    entries,
    first,
    n_entries,
    candidates,
    lo,
    n_candidates,
    users,
    positives,
    negatives,
    starts,
):
    """Draw ``m`` triples into ``users/positives/negatives[:m]``; returns the new stream state.

    Positive number ``r`` uniform in ``[0, n_entries)`` is stored entry ``entries[first + r]``
    (entry ``r`` itself when ``entries`` is empty); negative number ``r`` uniform in
    ``[0, n_candidates)`` is item ``candidates[lo + r]`` (item ``r`` when ``candidates`` is
    empty). All ``m`` positives are drawn first, then the negatives in order: the phases issue
    independent memory loads, which overlap, instead of one chain of dependent misses.
    """
    for b in range(m):
        state, z = _splitmix64(state)
        r = _bounded(z, n_entries)
        positives[b] = entries[first + r] if entries.shape[0] > 0 else r
    for b in range(m):
        k = positives[b]
        users[b] = row_of_nnz[k]
        positives[b] = indices[k]
    for b in range(m):
        starts[b] = indptr[users[b]]
        negatives[b] = indptr[users[b] + 1]  # the row's end, until the negative is found
    for b in range(m):
        stop = negatives[b]
        negatives[b] = -1
        for _t in range(MAX_NEGATIVE_TRIES):
            state, z = _splitmix64(state)
            r = _bounded(z, n_candidates)
            candidate = candidates[lo + r] if candidates.shape[0] > 0 else r
            if not contains(indices, starts[b], stop, candidate):
                negatives[b] = candidate
                break
    return state


def _draw_batch_reference(
    state: int,
    m: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    row_of_nnz: np.ndarray,
    entries: np.ndarray | None,
    n_entries: int,
    candidates: np.ndarray | None,
    n_candidates: int,
) -> tuple[int, list[tuple[int, int, int]]]:
    """``m`` triples ``(u, i, j)`` (``j = -1``: none found) in :func:`_draw_batch`'s order."""
    picked = []
    for _ in range(m):
        state, z = _splitmix64_reference(state)
        r = _bounded_reference(z, n_entries)
        picked.append(int(entries[r]) if entries is not None else r)
    triples = []
    for k in picked:
        u = int(row_of_nnz[k])
        row = set(indices[indptr[u] : indptr[u + 1]].tolist())
        j = -1
        for _t in range(MAX_NEGATIVE_TRIES):
            state, z = _splitmix64_reference(state)
            r = _bounded_reference(z, n_candidates)
            candidate = int(candidates[r]) if candidates is not None else r
            if candidate not in row:
                j = candidate
                break
        triples.append((u, int(indices[k]), j))
    return state, triples


@kernel(fastmath=True)
def _sgd_step(X, Y, u, i, j, learning_rate, regularization):
    """One SGD step on the triple ``(u, i, j)`` (module docstring), in the factors' precision:
    ``theta <- (1 - lr * lambda) theta + lr * z * d(x)/d(theta)``."""
    bias = X.shape[1] - 1
    xu = X[u]
    yi = Y[i]
    yj = Y[j]
    score = xu[0] * (yi[0] - yj[0])
    for f in range(1, bias + 1):
        score += xu[f] * (yi[f] - yj[f])
    step = learning_rate / (np.float32(1.0) + np.exp(score))  # lr * z
    keep = np.float32(1.0) - learning_rate * regularization
    for f in range(bias):
        a = xu[f]
        b = yi[f]
        c = yj[f]
        xu[f] = keep * a + step * (b - c)
        yi[f] = keep * b + step * a
        yj[f] = keep * c - step * a
    yi[bias] = keep * yi[bias] + step
    yj[bias] = keep * yj[bias] - step


def _sgd_step_reference(
    X: np.ndarray, Y: np.ndarray, u: int, i: int, j: int, learning_rate: float, regularization: float
) -> None:
    x = float(np.dot(X[u].astype(np.float64), (Y[i] - Y[j]).astype(np.float64)))
    z = 1.0 / (1.0 + np.exp(x))
    xu, yi, yj = X[u, :-1].copy(), Y[i].copy(), Y[j].copy()
    X[u, :-1] = xu + learning_rate * (z * (yi[:-1] - yj[:-1]) - regularization * xu)
    Y[i, :-1] = yi[:-1] + learning_rate * (z * xu - regularization * yi[:-1])
    Y[j, :-1] = yj[:-1] + learning_rate * (-z * xu - regularization * yj[:-1])
    Y[i, -1] = yi[-1] + learning_rate * (z - regularization * yi[-1])
    Y[j, -1] = yj[-1] + learning_rate * (-z - regularization * yj[-1])


@kernel(fastmath=True)
def _run_stream(
    state,
    samples,
    indptr,
    indices,
    row_of_nnz,
    X,
    Y,
    learning_rate,
    regularization,
    entries,
    first,
    n_entries,
    candidates,
    lo,
    n_candidates,
):
    """``samples`` SGD steps from one stream, in batches of ``BATCH`` triples; returns the
    number skipped for want of a negative."""
    users = np.empty(BATCH, np.int64)
    positives = np.empty(BATCH, np.int64)
    negatives = np.empty(BATCH, np.int64)
    starts = np.empty(BATCH, np.int64)
    miss = 0
    done = 0
    while done < samples:
        m = min(BATCH, samples - done)
        state = _draw_batch(
            state,
            m,
            indptr,
            indices,
            row_of_nnz,
            entries,
            first,
            n_entries,
            candidates,
            lo,
            n_candidates,
            users,
            positives,
            negatives,
            starts,
        )
        for b in range(m):
            if negatives[b] < 0:
                miss += 1
            else:
                _sgd_step(X, Y, users[b], positives[b], negatives[b], learning_rate, regularization)
        done += m
    return miss


def _run_stream_reference(
    state: int,
    samples: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    row_of_nnz: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    learning_rate: float,
    regularization: float,
    entries: np.ndarray | None,
    n_entries: int,
    candidates: np.ndarray | None,
    n_candidates: int,
) -> int:
    miss = 0
    for done in range(0, samples, BATCH):
        m = min(BATCH, samples - done)
        state, triples = _draw_batch_reference(
            state, m, indptr, indices, row_of_nnz, entries, n_entries, candidates, n_candidates
        )
        for u, i, j in triples:
            if j < 0:
                miss += 1
            else:
                _sgd_step_reference(X, Y, u, i, j, learning_rate, regularization)
    return miss


# Hogwild epoch ---------------------------------------------------------------------------------
@kernel(parallel=True, fastmath=True)
def bpr_epoch_hogwild(
    indptr: np.ndarray,
    indices: np.ndarray,
    row_of_nnz: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    learning_rate: float,
    regularization: float,
    seeds: np.ndarray,
    samples: int,
) -> int:
    """``samples`` SGD steps split over ``len(seeds)`` parallel streams; returns the number of
    triples skipped for want of a negative. ``X``/``Y`` are updated in place."""
    n_streams = seeds.shape[0]
    n_items = Y.shape[0]
    nnz = indices.shape[0]
    none = np.empty(0, np.int64)
    skipped = np.zeros(n_streams, np.int64)
    for s in prange(n_streams):
        todo = samples // n_streams + (1 if s < samples % n_streams else 0)
        skipped[s] = _run_stream(
            seeds[s],
            todo,
            indptr,
            indices,
            row_of_nnz,
            X,
            Y,
            learning_rate,
            regularization,
            none,
            0,
            nnz,
            none,
            0,
            n_items,
        )
    return skipped.sum()


def bpr_epoch_hogwild_reference(
    indptr: np.ndarray,
    indices: np.ndarray,
    row_of_nnz: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    learning_rate: float,
    regularization: float,
    seeds: np.ndarray,
    samples: int,
) -> int:
    """:func:`bpr_epoch_hogwild` with the streams run one after another (what the kernel does
    on one thread)."""
    n_streams = len(seeds)
    skipped = 0
    for s in range(n_streams):
        todo = samples // n_streams + (1 if s < samples % n_streams else 0)
        skipped += _run_stream_reference(
            int(seeds[s]),
            todo,
            indptr,
            indices,
            row_of_nnz,
            X,
            Y,
            learning_rate,
            regularization,
            None,
            len(indices),
            None,
            Y.shape[0],
        )
    return skipped


# stratified (deterministic) epoch --------------------------------------------------------------
@kernel()
def group_by_cell(
    row_of_nnz: np.ndarray, indices: np.ndarray, user_block: np.ndarray, item_block: np.ndarray, n_blocks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counting sort of the stored entries by cell ``user_block[u] * n_blocks + item_block[i]``.

    Returns ``(cell_ptr [n_blocks**2 + 1], cell_nnz [nnz])``: the entry numbers of cell ``c``
    are ``cell_nnz[cell_ptr[c]:cell_ptr[c + 1]]``, in increasing order.
    """
    n_cells = n_blocks * n_blocks
    nnz = indices.shape[0]
    cell_ptr = np.zeros(n_cells + 1, np.int64)
    for k in range(nnz):
        cell_ptr[user_block[row_of_nnz[k]] * n_blocks + item_block[indices[k]] + 1] += 1
    for c in range(n_cells):
        cell_ptr[c + 1] += cell_ptr[c]
    fill = cell_ptr[:-1].copy()
    cell_nnz = np.empty(nnz, np.int64)
    for k in range(nnz):
        c = user_block[row_of_nnz[k]] * n_blocks + item_block[indices[k]]
        cell_nnz[fill[c]] = k
        fill[c] += 1
    return cell_ptr, cell_nnz


def group_by_cell_reference(
    row_of_nnz: np.ndarray, indices: np.ndarray, user_block: np.ndarray, item_block: np.ndarray, n_blocks: int
) -> tuple[np.ndarray, np.ndarray]:
    cell = user_block[row_of_nnz].astype(np.int64) * n_blocks + item_block[indices]
    cell_nnz = np.argsort(cell, kind="stable").astype(np.int64)
    cell_ptr = np.concatenate([[0], np.cumsum(np.bincount(cell, minlength=n_blocks * n_blocks))])
    return cell_ptr.astype(np.int64), cell_nnz


@kernel(parallel=True, fastmath=True)
def bpr_epoch_blocked(
    indptr: np.ndarray,
    indices: np.ndarray,
    row_of_nnz: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    learning_rate: float,
    regularization: float,
    cell_ptr: np.ndarray,
    cell_nnz: np.ndarray,
    block_ptr: np.ndarray,
    block_items: np.ndarray,
    seeds: np.ndarray,
) -> int:
    """One stratified epoch (module docstring): as many steps as stored entries, the same
    result for any number of threads. ``block_items[block_ptr[b]:block_ptr[b + 1]]`` are the
    items of block ``b``; ``cell_ptr``/``cell_nnz`` come from :func:`group_by_cell`; ``seeds``
    has one seed per cell. Returns the number of triples skipped for want of a negative."""
    n_blocks = block_ptr.shape[0] - 1
    skipped = np.zeros(n_blocks * n_blocks, np.int64)
    for stratum in range(n_blocks):
        for b in prange(n_blocks):
            item_blk = (b + stratum) % n_blocks
            cell = b * n_blocks + item_blk
            size = cell_ptr[cell + 1] - cell_ptr[cell]
            skipped[cell] = _run_stream(
                seeds[cell],
                size,
                indptr,
                indices,
                row_of_nnz,
                X,
                Y,
                learning_rate,
                regularization,
                cell_nnz,
                cell_ptr[cell],
                size,
                block_items,
                block_ptr[item_blk],
                block_ptr[item_blk + 1] - block_ptr[item_blk],
            )
    return skipped.sum()


def bpr_epoch_blocked_reference(
    indptr: np.ndarray,
    indices: np.ndarray,
    row_of_nnz: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    learning_rate: float,
    regularization: float,
    cell_ptr: np.ndarray,
    cell_nnz: np.ndarray,
    block_ptr: np.ndarray,
    block_items: np.ndarray,
    seeds: np.ndarray,
) -> int:
    """:func:`bpr_epoch_blocked` with the cells run one after another."""
    n_blocks = len(block_ptr) - 1
    skipped = 0
    for stratum in range(n_blocks):
        for b in range(n_blocks):
            item_blk = (b + stratum) % n_blocks
            cell = b * n_blocks + item_blk
            entries = cell_nnz[cell_ptr[cell] : cell_ptr[cell + 1]]
            block = block_items[block_ptr[item_blk] : block_ptr[item_blk + 1]]
            skipped += _run_stream_reference(
                int(seeds[cell]),
                len(entries),
                indptr,
                indices,
                row_of_nnz,
                X,
                Y,
                learning_rate,
                regularization,
                entries,
                len(entries),
                block,
                len(block),
            )
    return skipped


# a fixed sample of triples and the loss on it ---------------------------------------------------
@kernel()
def sample_triples(
    indptr: np.ndarray, indices: np.ndarray, row_of_nnz: np.ndarray, n_items: int, seed: np.uint64, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` triples ``(users, positives, negatives)`` drawn as in the Hogwild epoch from one
    stream; ``negatives[t] == -1`` where no negative was found."""
    users = np.empty(n, np.int64)
    positives = np.empty(n, np.int64)
    negatives = np.empty(n, np.int64)
    starts = np.empty(BATCH, np.int64)
    none = np.empty(0, np.int64)
    state = seed
    for t in range(0, n, BATCH):
        m = min(BATCH, n - t)
        state = _draw_batch(
            state,
            m,
            indptr,
            indices,
            row_of_nnz,
            none,
            0,
            indices.shape[0],
            none,
            0,
            n_items,
            users[t:],
            positives[t:],
            negatives[t:],
            starts,
        )
    return users, positives, negatives


def sample_triples_reference(
    indptr: np.ndarray, indices: np.ndarray, row_of_nnz: np.ndarray, n_items: int, seed: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    state, triples = int(seed), []
    for t in range(0, n, BATCH):
        state, batch = _draw_batch_reference(
            state, min(BATCH, n - t), indptr, indices, row_of_nnz, None, len(indices), None, n_items
        )
        triples += batch
    out = np.array(triples, dtype=np.int64).reshape(-1, 3)
    return out[:, 0].copy(), out[:, 1].copy(), out[:, 2].copy()


@kernel(parallel=True, fastmath=True)
def bpr_loss(
    X: np.ndarray, Y: np.ndarray, users: np.ndarray, positives: np.ndarray, negatives: np.ndarray
) -> float:
    """Mean BPR log-loss ``-ln sigma(X[u] . (Y[i] - Y[j]))`` over the given triples."""
    n = users.shape[0]
    width = X.shape[1]
    total = 0.0
    for t in prange(n):
        u = users[t]
        i = positives[t]
        j = negatives[t]
        x = 0.0
        for f in range(width):
            x += X[u, f] * (Y[i, f] - Y[j, f])
        # -ln sigma(x) = ln(1 + e^-x), evaluated without overflow
        total += max(-x, 0.0) + np.log1p(np.exp(-abs(x)))
    return total / max(n, 1)


def bpr_loss_reference(
    X: np.ndarray, Y: np.ndarray, users: np.ndarray, positives: np.ndarray, negatives: np.ndarray
) -> float:
    x = np.einsum("tf,tf->t", X[users].astype(np.float64), (Y[positives] - Y[negatives]).astype(np.float64))
    return float(np.mean(np.logaddexp(0.0, -x))) if len(x) else 0.0
