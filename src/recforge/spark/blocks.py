"""Block-partitioned ALS: the blocks, what moves between them, and one block's solve.

This is Spark ALS's design (``partitionRatings``, ``makeBlocks``, ``computeFactors``) in NumPy,
with recforge's own kernels for the solves. It runs inside Spark's executors; nothing here
imports pyspark, so it can be tested (and read) on its own.

**Blocks.** A side (users or items) with ``n`` dense indices is cut into ``B`` blocks: index
``g`` lives in block ``g % B`` at local index ``g // B`` (Spark hashes ids the same way), so a
block of ``n_b = ceil((n - b) / B)`` rows needs no id map.

**Rating blocks.** The ratings between user block ``b`` and item block ``c`` form one rating
block (duplicates summed, see :func:`merge_pairs`). Its *active* users are the distinct users
in it (sorted local indices), its active items likewise. When the items are solved, user block
``b`` ships to item block ``c`` the factors of exactly its active users, in that order: that
list is ``b``'s **out-block** for ``c``. Item block ``c`` refers to a shipped user by its
*slot*, the position among those rows (a binary search in the active set).

**In-blocks.** Item block ``c``'s **in-block** is a CSR matrix over its rows whose column
indices point into the concatenation of the factor blocks shipped to it, source blocks in order
(``offsets[b]`` is where block ``b``'s rows start), and whose values are ``r``. Within a row,
entries are sorted by the other side's global index, as in a local CSR matrix. So one
half-iteration is: every source block ships its rows (:func:`ship`), every destination block
concatenates what it got (:func:`gather`) and solves (1) of :mod:`recforge.kernels.als` for its rows over its
in-block (:func:`solve_block`) with :func:`recforge.models.als_solve.solve_rows`: the same
dispatch, kernels, scratch and per-row arithmetic as local training.

**Rotations.** As local training does, implicit fits solve in the eigenbasis ``Q`` of the
source side's Gram matrix ``G = Y^T Y``, where the kernels' ``G`` is diagonal. The driver sums
``G`` from every source block's part ``Y_b^T Y_b`` (computed by the task that solved the block,
summed in block order, so the same factors give the same bits), finds ``Q`` once and hands
``(eigenvalues, Q)`` to the half-iteration's tasks in its
:class:`~recforge.models.als_solve.HalfStep`: every source block rotates its factors into that
basis once and ships them (:func:`ship`); every destination block rotates its previous factors
(CG's start) into it, solves, and rotates its new factors back: stored factors are always in
the original basis.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numba
import numpy as np

from recforge._numba import thread_limits
from recforge.kernels import als as kernels
from recforge.models.als_solve import BLOCKS_PER_THREAD, HalfStep, solve_rows

__all__ = [
    "BLOCKS_PER_THREAD",
    "FactorBlock",
    "InBlock",
    "OutBlock",
    "Piece",
    "SeenBlock",
    "Shipped",
    "assemble",
    "block_rows",
    "gather",
    "link",
    "merge_pairs",
    "rotate",
    "ship",
    "solve_block",
    "split_pairs",
]

#: rows an input partition buffers before cutting them into pieces per destination block (ALS's
#: rating blocks, ItemKNN's user blocks)
FLUSH_ROWS = 1 << 22

#: rows rotated per BLAS call (as local training rotates)
ROTATE_ROWS = kernels.ROTATE_ROWS


def block_rows(n: int, n_blocks: int, block: int) -> int:
    """Rows of block ``block``: the indices ``g < n`` with ``g % n_blocks == block``."""
    return max(0, (n - block + n_blocks - 1) // n_blocks)


# rating blocks ------------------------------------------------------------------------------
def split_pairs(
    users: np.ndarray, items: np.ndarray, values: np.ndarray, n_user_blocks: int, n_item_blocks: int
) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Cut ratings (global indices) into partial rating blocks.

    Returns ``(pair, local users, local items, values)`` per pair present, ``pair = b *
    n_item_blocks + c``; each is sorted by (user, item) with duplicates summed (float64).
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    pair = (users % n_user_blocks) * n_item_blocks + items % n_item_blocks
    order = np.argsort(pair, kind="stable")
    pair = pair[order]
    cuts = np.flatnonzero(np.diff(pair)) + 1
    out = []
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(pair)], strict=True):
        if start == stop:
            continue
        rows = order[start:stop]
        u = (users[rows] // n_user_blocks).astype(np.int32)
        i = (items[rows] // n_item_blocks).astype(np.int32)
        out.append((int(pair[start]), *merge_pairs([(u, i, values[rows])])))
    return out


def merge_pairs(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate ``(users, items, values)`` parts in the given order, sort by (user, item)
    (stable: duplicates keep that order) and sum duplicates in float64.

    Given the parts in a fixed order, the sums are rounded the same way every time.
    """
    u = np.concatenate([np.asarray(p[0], dtype=np.int32) for p in parts])
    i = np.concatenate([np.asarray(p[1], dtype=np.int32) for p in parts])
    v = np.concatenate([np.asarray(p[2], dtype=np.float64) for p in parts])
    order = np.lexsort((i, u))
    u, i, v = u[order], i[order], v[order]
    if len(u) < 2:
        return u, i, v
    first = np.r_[True, (u[1:] != u[:-1]) | (i[1:] != i[:-1])]
    if first.all():
        return u, i, v
    starts = np.flatnonzero(first)
    return u[starts], i[starts], np.add.reduceat(v, starts)


@dataclass(frozen=True)
class Piece:
    """What one rating block contributes to block ``block`` of one side.

    ``rows`` (local), ``columns`` (the other side's *global* index), ``slots`` (position among
    the rows block ``other`` ships here) and ``values`` per entry; ``active``: the sorted local
    rows of ``block`` with an entry here (what ``block`` ships to ``other``); ``shipped``: how
    many rows ``other`` ships to ``block``.
    """

    block: int
    other: int
    rows: np.ndarray
    columns: np.ndarray
    slots: np.ndarray
    values: np.ndarray
    active: np.ndarray
    shipped: int


def link(
    user_block: int,
    item_block: int,
    users: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    n_user_blocks: int,
    n_item_blocks: int,
) -> tuple[Piece, Piece]:
    """The user-side and item-side pieces of the merged rating block ``(user_block, item_block)``
    (local indices, float32 values)."""
    users = np.asarray(users, dtype=np.int32)
    items = np.asarray(items, dtype=np.int32)
    values = np.asarray(values, dtype=np.float32)
    active_users = np.unique(users)
    active_items = np.unique(items)
    user_slots = np.searchsorted(active_users, users).astype(np.int32)
    item_slots = np.searchsorted(active_items, items).astype(np.int32)
    user_piece = Piece(
        user_block,
        item_block,
        users,
        (items.astype(np.int64) * n_item_blocks + item_block).astype(np.int32),
        item_slots,
        values,
        active_users,
        len(active_items),
    )
    item_piece = Piece(
        item_block,
        user_block,
        items,
        (users.astype(np.int64) * n_user_blocks + user_block).astype(np.int32),
        user_slots,
        values,
        active_items,
        len(active_users),
    )
    return user_piece, item_piece


# in- and out-blocks -------------------------------------------------------------------------
@dataclass(frozen=True)
class InBlock:
    """A block's ratings as CSR over its rows, indices pointing into the concatenation of the
    shipped factor blocks (source block ``b``'s rows at ``offsets[b]:offsets[b + 1]``)."""

    block: int
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    offsets: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.indptr) - 1


@dataclass(frozen=True)
class OutBlock:
    """``rows[c]``: the sorted local rows this block ships to block ``c`` of the other side."""

    block: int
    rows: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class SeenBlock:
    """The same entries as the :class:`InBlock`, by the other side's global index: for users,
    the items they have seen (``r`` values)."""

    block: int
    indptr: np.ndarray
    columns: np.ndarray
    data: np.ndarray


def assemble(
    pieces: Sequence[Piece], block: int, n_rows: int, n_other_blocks: int
) -> tuple[InBlock, OutBlock, SeenBlock]:
    """A block's in-, out- and seen-block from all its pieces (any order)."""
    pieces = sorted(pieces, key=lambda p: p.other)
    if any(p.block != block for p in pieces) or len({p.other for p in pieces}) != len(pieces):
        raise ValueError(f"pieces for block {block} are mixed up or repeated")
    offsets = np.zeros(n_other_blocks + 1, dtype=np.int64)
    for p in pieces:
        offsets[p.other + 1] = p.shipped
    offsets = np.cumsum(offsets)
    if pieces:
        rows = np.concatenate([p.rows for p in pieces])
        columns = np.concatenate([p.columns for p in pieces])
        indices = np.concatenate([p.slots.astype(np.int64) + offsets[p.other] for p in pieces])
        data = np.concatenate([p.values for p in pieces])
    else:
        rows = columns = np.zeros(0, np.int32)
        indices, data = np.zeros(0, np.int64), np.zeros(0, np.float32)
    order = np.lexsort((columns, rows))
    index_type = np.int32 if len(rows) < np.iinfo(np.int32).max else np.int64  # as SciPy's CSR
    indptr = np.zeros(n_rows + 1, dtype=index_type)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    data = np.ascontiguousarray(data[order], dtype=np.float32)
    in_block = InBlock(block, indptr, indices[order].astype(np.int32), data, offsets)
    out = [np.zeros(0, np.int32)] * n_other_blocks
    for p in pieces:
        out[p.other] = p.active.astype(np.int32)
    return (
        in_block,
        OutBlock(block, tuple(out)),
        SeenBlock(block, indptr, columns[order].astype(np.int32), data),
    )


# factors in motion --------------------------------------------------------------------------
@dataclass(frozen=True)
class FactorBlock:
    """A block's factors ``[rows, f]``, in the original basis."""

    block: int
    values: np.ndarray


@dataclass(frozen=True)
class Shipped:
    """The rows a source block ships to one destination block."""

    source: int
    values: np.ndarray


def rotate(X: np.ndarray, rotations: Sequence[np.ndarray]) -> np.ndarray:
    """``X @ Q_1 @ Q_2 ...`` in ``X``'s dtype, one product after the other (as local training
    rotates in place), over chunks of rows; ``X`` itself when there is nothing to apply."""
    for Q in rotations:
        out = np.empty_like(X)
        for start in range(0, len(X), ROTATE_ROWS):
            stop = min(start + ROTATE_ROWS, len(X))
            np.dot(X[start:stop], Q, out=out[start:stop])
        X = out
    return X


def ship(factors: FactorBlock, out: OutBlock, rotation: np.ndarray | None) -> Iterator[tuple[int, Shipped]]:
    """``(destination block, Shipped)`` for every destination that needs rows of this block,
    in the basis ``rotation`` (the half-step's ``Q``; ``None``: as they are). The block is
    rotated once here, not once per destination that receives a row."""
    with thread_limits(blas_threads=1):
        X = rotate(factors.values, () if rotation is None else (rotation,))
    for destination, rows in enumerate(out.rows):
        if len(rows):
            yield destination, Shipped(out.block, np.ascontiguousarray(X[rows]))


def gather(block: InBlock, shipped: Sequence[Shipped], factors: int, dtype: np.dtype) -> np.ndarray:
    """The concatenation of the shipped rows in source order, checked against ``offsets``."""
    by_source = {s.source: s.values for s in shipped}
    if len(by_source) != len(shipped):
        raise ValueError(f"block {block.block} received factors from a source block twice")
    expected = np.diff(block.offsets)
    parts = []
    for source, count in enumerate(expected):
        values = by_source.pop(source, None)
        got = 0 if values is None else len(values)
        if got != count:
            raise ValueError(
                f"block {block.block} expected {count} factor rows from block {source}, got {got}"
            )
        if values is not None:
            parts.append(values)
    if by_source:
        raise ValueError(f"block {block.block} received factors from unknown blocks {sorted(by_source)}")
    if not parts:
        return np.zeros((0, factors), dtype=dtype)
    return np.ascontiguousarray(np.concatenate(parts), dtype=dtype)


def solve_block(
    block: InBlock,
    Y: np.ndarray,
    previous: FactorBlock | None,
    step: HalfStep,
    threads: int = 1,
) -> tuple[FactorBlock, int]:
    """Solve (1) of :mod:`recforge.kernels.als` for every row of ``block`` against ``Y``, the
    factors shipped to it (:func:`gather`, already in the basis of ``step``'s rotation), with
    :func:`~recforge.models.als_solve.solve_rows` as local training (``threads`` numba threads,
    BLAS pinned to 1); ``step`` carries the Gram of the shipped side
    (:meth:`~recforge.models.als_solve.HalfStep.with_gram`).

    Returns the new factors (original basis) and the number of rows whose system could not be
    solved (exact: singular; NNLS: not converged)."""
    dtype = np.dtype(step.dtype)
    f = step.factors
    if step.warm_start and (previous is None or previous.values.shape != (block.rows, f)):
        raise ValueError(f"block {block.block} needs its previous factors as the solver's start")
    rotation = () if step.rotation is None else (step.rotation,)
    with thread_limits(numba_threads=threads, blas_threads=1), numba.parallel_chunksize(1):
        if step.warm_start:
            assert previous is not None
            X = np.array(rotate(previous.values, rotation), dtype=dtype, order="C", copy=True)
        else:
            X = np.zeros((block.rows, f), dtype=dtype)
        blocks = kernels.row_blocks(block.indptr, BLOCKS_PER_THREAD * max(1, threads))
        failures = solve_rows(step, block.indptr, block.indices, block.data, X, Y, blocks)
        if step.rotation is not None:
            X = rotate(X, (np.ascontiguousarray(step.rotation.T),))
    return FactorBlock(block.block, X), failures
