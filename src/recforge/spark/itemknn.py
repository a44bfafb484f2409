"""``SparkItemKNN``: ItemKNN's "viewed together" lists on a Spark cluster, as a blocked sparse product.

The maths are :class:`recforge.ItemKNN`'s (its module states them: weights ``1 + ln r`` per
user, each user's row scaled to unit length, cosine between items, the ``neighbors`` best per
item); the result is a fitted ``ItemKNN`` with the same bits as a local fit on the same pairs:

1. **Vocabularies** and dense indices as :class:`~recforge.spark.SparkALS` builds them
   (:mod:`recforge.spark.pairs`): sorted distinct ids, looked up against broadcast copies.
2. **User blocks** (user ``u`` in block ``u % B_u``, at local row ``u // B_u``): one shuffle
   gathers each user's pairs in its block, where duplicates are summed (float64, input order,
   :func:`recforge.spark.blocks.merge_pairs`), positive ``r`` kept (float32, as
   :class:`~recforge.data.Interactions` stores it), and the rows weighted and normalised by
   :func:`recforge.models.itemknn.user_weights`, the function local fitting calls: row by row,
   so a block of whole rows gets the bits of the whole matrix.
3. **Column norms**: each weight goes to its item's block (item ``i`` in block ``i % B_i``),
   which sums each of its items' squares in user order (:func:`column_norms`, the order of a
   local CSR); the driver gathers the ``n_items`` norms and broadcasts them.
4. **The product**: each user block divides its rows by the column norms
   (:func:`scale_columns`) and ships every row to each item block it has an item in; each item
   block orders the rows it got by user and runs :func:`column_dot_topn` for its own items
   against every item: the same products summed in the same order as the local kernel, kept in
   a bounded heap of ``neighbors`` per item. Work ``sum_u |row_u|^2`` split over the item
   blocks; shuffled ``sum_u |row_u| * min(|row_u|, B_i)`` entries; memory per task its rows and
   one accumulator of ``n_items`` per thread. Never an items x items matrix, never a self-join
   of all pairs.
5. **Output**: the lists, the ``r`` matrix and the user weights are collected into a fitted
   :class:`recforge.ItemKNN` (``save``, artifacts and serving unchanged). Batch inference
   (:mod:`recforge.spark.topk`) broadcasts its neighbour lists to the executors.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from recforge._numba import thread_limits
from recforge._validation import check_number
from recforge.data.vocabulary import Vocabulary
from recforge.kernels.similarity import (
    balanced_bounds,
    column_dot_topn,
    column_norms,
    neighbour_matrix,
    scale_columns,
)
from recforge.models.itemknn import ItemKNN, user_weights
from recforge.spark import blocks
from recforge.spark.pairs import IdIndex, checked_ratings, pair_chunks, pair_columns
from recforge.spark.session import block_of, check_executors, require_pyspark, task_threads

if TYPE_CHECKING:
    from pyspark import RDD
    from pyspark.sql import DataFrame

__all__ = ["SparkItemKNN"]

log = logging.getLogger("recforge.spark")

#: chunks of equal work per thread in an item block's kernel call (as local fitting)
CHUNKS_PER_THREAD = 8
_CUT_SCHEMA = "block int, part int, seq int, users binary, items binary, values binary"


class SparkItemKNN:
    """Fit :class:`recforge.ItemKNN` on a Spark DataFrame of ``(user, item, value)`` rows.

    ``SparkItemKNN(ItemKNN(neighbors=20))`` or ``SparkItemKNN(neighbors=20)`` (not both);
    ``num_threads=0`` means ``spark.task.cpus`` numba threads per task. The Spark settings are
    ``num_user_blocks`` and ``num_item_blocks`` (the parallelism of the weighting and of the
    product). ``fit`` returns a fitted ``ItemKNN``.
    """

    def __init__(
        self,
        knn: ItemKNN | None = None,
        *,
        num_user_blocks: int = 10,
        num_item_blocks: int = 10,
        **knn_params: Any,
    ) -> None:
        if knn is None:
            knn = ItemKNN(**knn_params)
        elif not isinstance(knn, ItemKNN):
            raise TypeError(f"SparkItemKNN fits a recforge.ItemKNN, got {knn!r}")
        elif knn_params:
            raise TypeError(
                f"give SparkItemKNN an ItemKNN or its parameters, not both (got {sorted(knn_params)})"
            )
        self._knn = knn.clone()
        self.num_user_blocks = num_user_blocks
        self.num_item_blocks = num_item_blocks

    @property
    def knn(self) -> ItemKNN:
        """An unfitted copy of the ``ItemKNN`` this fits (its hyperparameters)."""
        return self._knn.clone()

    def __repr__(self) -> str:
        return (
            f"SparkItemKNN({self._knn!r}, num_user_blocks={self.num_user_blocks!r}, "
            f"num_item_blocks={self.num_item_blocks!r})"
        )

    def _validate_params(self) -> ItemKNN:
        model = self._knn.clone()
        model._validate_params()
        check_number("num_user_blocks", self.num_user_blocks, integer=True, low=1)
        check_number("num_item_blocks", self.num_item_blocks, integer=True, low=1)
        return model

    def fit(
        self,
        ratings: DataFrame,
        user_col: str = "user",
        item_col: str = "item",
        value_col: str | None = "value",
    ) -> ItemKNN:
        """Fit on ``ratings`` (ids strings or integers, ``value_col`` the ``r`` of each row,
        duplicates summed; ``None``: every row counts 1). Returns the fitted ``ItemKNN``."""
        self._validate_params()
        require_pyspark()
        check_executors(ratings.sparkSession.sparkContext)
        frame, users, items = checked_ratings(ratings, user_col, item_col, value_col)
        try:
            return self._fit(frame, users, items, IdIndex(frame, users, items))
        finally:
            frame.unpersist()

    def fit_indexed(self, pairs: DataFrame, users: Vocabulary, items: Vocabulary) -> ItemKNN:
        """Fit on indexed pairs ``(u int, i int, value double)`` (:mod:`recforge.spark.pairs`)
        whose indices point into ``users`` and ``items``."""
        return self._fit(pairs, users, items, None)

    def _fit(self, pairs: DataFrame, users: Vocabulary, items: Vocabulary, index: IdIndex | None) -> ItemKNN:
        model = self._validate_params()
        require_pyspark()
        sc = pairs.sparkSession.sparkContext
        check_executors(sc)
        layout = _Layout(len(users), len(items), int(self.num_user_blocks), int(self.num_item_blocks))
        threads = int(model.num_threads)
        n = min(int(model.neighbors), max(layout.n_items - 1, 0))
        started = time.perf_counter()
        rows = _user_rows(pairs, layout, index)
        try:
            norms = _norms(rows, layout)
            log.info(
                "SparkItemKNN: %s users x %s items in %d user / %d item blocks, weighted in %.1f s",
                f"{layout.n_users:,}",
                f"{layout.n_items:,}",
                layout.user_blocks,
                layout.item_blocks,
                time.perf_counter() - started,
            )
            product = (
                rows.flatMap(functools.partial(_ship_task, layout, sc.broadcast(norms)))
                .partitionBy(layout.item_blocks, block_of)
                .mapPartitionsWithIndex(functools.partial(_product_task, layout, n, threads))
            )
            ids = np.full((layout.n_items, n), -1, dtype=np.int32)
            scores = np.zeros((layout.n_items, n), dtype=np.float32)
            for block, (block_ids, block_scores) in product.collect():
                ids[block :: layout.item_blocks] = block_ids
                scores[block :: layout.item_blocks] = block_scores
            log.info("SparkItemKNN: %d neighbours per item in %.1f s", n, time.perf_counter() - started)
            seen, weights = _collect_rows(rows, layout)
        finally:
            rows.unpersist()
        model.users_ = users
        model.items_ = items
        model.seen_ = seen
        model.user_weights_ = weights
        model.similarity_ = neighbour_matrix(ids, scores, layout.n_items)
        return model


@dataclass(frozen=True)
class _Layout:
    n_users: int
    n_items: int
    user_blocks: int
    item_blocks: int


@dataclass(frozen=True)
class _Rows:
    """A user block's rows: CSR over its local rows, global item indices, ``r`` and weights."""

    block: int
    indptr: np.ndarray
    indices: np.ndarray
    r: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class _Column:
    """Weights on the items of one item block: ``(global user, global item, weight)``."""

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class _Shipped:
    """Whole rows (unit-column values) a user block ships to one item block."""

    users: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray


# executors ----------------------------------------------------------------------------------
def _cut_task(n_user_blocks: int, index: IdIndex | None, batches: Iterator[Any]) -> Iterator[Any]:
    """Executor: an input partition's pairs (indexed here with ``index``, if given) cut into
    pieces per user block (Arrow rows)."""
    import pyarrow as pa
    from pyspark import TaskContext

    context = TaskContext.get()
    part = context.partitionId() if context is not None else 0
    for seq, (u, i, v) in enumerate(pair_chunks(batches, index)):
        block = u % n_user_blocks
        order = np.argsort(block, kind="stable")
        cuts = np.flatnonzero(np.diff(block[order])) + 1
        pieces = [p for p in np.split(order, cuts) if len(p)]
        yield pa.RecordBatch.from_pydict(
            {
                "block": pa.array([int(block[p[0]]) for p in pieces], pa.int32()),
                "part": pa.array([part] * len(pieces), pa.int32()),
                "seq": pa.array([seq] * len(pieces), pa.int32()),
                "users": pa.array([u[p].tobytes() for p in pieces], pa.binary()),
                "items": pa.array([i[p].tobytes() for p in pieces], pa.binary()),
                "values": pa.array([v[p].tobytes() for p in pieces], pa.binary()),
            }
        )


def _cut_record(row: Any) -> tuple[int, tuple[int, int, bytes, bytes, bytes]]:
    return int(row[0]), (int(row[1]), int(row[2]), bytes(row[3]), bytes(row[4]), bytes(row[5]))


def _rows_task(
    layout: _Layout, block: int, records: Iterator[tuple[int, tuple[int, int, bytes, bytes, bytes]]]
) -> Iterator[tuple[int, _Rows]]:
    """Executor: a user block's rows from its pieces (in input order): ``r`` and weights."""
    parts = sorted((record for _, record in records), key=lambda r: (r[0], r[1]))
    n_rows = blocks.block_rows(layout.n_users, layout.user_blocks, block)
    if parts:
        u, i, v = blocks.merge_pairs(
            [
                (
                    np.frombuffer(p[2], np.int32) // layout.user_blocks,
                    np.frombuffer(p[3], np.int32),
                    np.frombuffer(p[4], np.float64),
                )
                for p in parts
            ]
        )
        r = v.astype(np.float32)  # the sums as Interactions stores them: float32, positive only
        keep = r > 0
        u, i, r = u[keep], i[keep], r[keep]
    else:
        u = i = np.zeros(0, np.int32)
        r = np.zeros(0, np.float32)
    indptr = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(u, minlength=n_rows), out=indptr[1:])
    matrix = sp.csr_matrix((r, i, indptr), shape=(n_rows, layout.n_items))
    weights = user_weights(matrix)
    yield block, _Rows(block, indptr, i.astype(np.int32), r, weights.data)


def _column_task(layout: _Layout, kv: tuple[int, _Rows]) -> Iterator[tuple[int, _Column]]:
    """Executor: a user block's weights, per item block."""
    rows = kv[1]
    local = np.repeat(np.arange(len(rows.indptr) - 1, dtype=np.int64), np.diff(rows.indptr))
    users = (local * layout.user_blocks + rows.block).astype(np.int32)
    target = rows.indices % layout.item_blocks
    for block in np.unique(target):
        mask = target == block
        yield int(block), _Column(users[mask], rows.indices[mask], rows.weights[mask])


def _norms_task(
    layout: _Layout, block: int, columns: Iterator[tuple[int, _Column]]
) -> Iterator[tuple[int, np.ndarray]]:
    """Executor: the norms of an item block's columns, each summed in user order."""
    parts = [c for _, c in columns]
    n = blocks.block_rows(layout.n_items, layout.item_blocks, block)
    if not parts:
        yield block, np.zeros(n)
        return
    users = np.concatenate([p.users for p in parts])
    items = np.concatenate([p.items for p in parts])
    weights = np.concatenate([p.weights for p in parts])
    order = np.lexsort((users, items))
    yield block, column_norms(items[order] // layout.item_blocks, weights[order], n)


def _ship_task(layout: _Layout, norms: Any, kv: tuple[int, _Rows]) -> Iterator[tuple[int, _Shipped]]:
    """Executor: a user block's rows, scaled to unit columns, to every item block they reach."""
    rows = kv[1]
    n_rows = len(rows.indptr) - 1
    unit = sp.csr_matrix(
        (scale_columns(rows.indices, rows.weights, norms.value), rows.indices, rows.indptr),
        shape=(n_rows, layout.n_items),
    )
    local = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(rows.indptr))
    target = rows.indices % layout.item_blocks
    for block in np.unique(target):
        reached = np.unique(local[target == block])
        part = unit[reached]
        users = (reached * layout.user_blocks + rows.block).astype(np.int32)
        yield int(block), _Shipped(users, part.indptr, part.indices, part.data)


def _product_task(
    layout: _Layout, n: int, threads: int, block: int, shipped: Iterator[tuple[int, _Shipped]]
) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray]]]:
    """Executor: the neighbour lists of an item block's items from the rows shipped to it."""
    parts = [s for _, s in shipped]
    if not parts:
        return
    users = np.concatenate([p.users for p in parts])
    stacked = sp.vstack(
        [sp.csr_matrix((p.values, p.indices, p.indptr), shape=(len(p.users), layout.n_items)) for p in parts],
        format="csr",
    )
    rows = sp.csr_matrix(stacked[np.argsort(users, kind="stable")])  # the users in increasing order
    rows.sort_indices()
    targets = np.arange(block, layout.n_items, layout.item_blocks, dtype=np.int64)
    columns = sp.csr_matrix(rows[:, targets].T)
    columns.sort_indices()
    row_length = np.diff(rows.indptr).astype(np.float64)
    work = np.bincount(
        np.repeat(np.arange(len(targets)), np.diff(columns.indptr)),
        weights=row_length[columns.indices],
        minlength=len(targets),
    )
    threads = task_threads(threads)
    with thread_limits(threads):
        ids, scores = column_dot_topn(
            rows.indptr,
            rows.indices,
            rows.data,
            columns.indptr,
            columns.indices,
            columns.data,
            targets,
            layout.n_items,
            n,
            balanced_bounds(work + 1.0, CHUNKS_PER_THREAD * threads),
        )
    yield block, (ids, scores)


def _row_arrays(kv: tuple[int, _Rows]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows = kv[1]
    return rows.block, rows.indptr, rows.indices, rows.r, rows.weights


# driver -------------------------------------------------------------------------------------
def _user_rows(pairs: DataFrame, layout: _Layout, index: IdIndex | None) -> RDD[Any]:
    """The user blocks, cached and computed, from indexed pairs or (with ``index``) ratings."""
    cut = pairs.select(*pair_columns(index)).mapInArrow(
        functools.partial(_cut_task, layout.user_blocks, index), _CUT_SCHEMA
    )
    rows = (
        cut.rdd.map(_cut_record)
        .partitionBy(layout.user_blocks, block_of)
        .mapPartitionsWithIndex(functools.partial(_rows_task, layout), preservesPartitioning=True)
        .persist()
    )
    rows._jrdd.count()  # computed (and cached) without reading it back into Python
    return rows


def _norms(rows: RDD[Any], layout: _Layout) -> np.ndarray:
    """The ``n_items`` column norms (float64), on the driver."""
    per_block = (
        rows.flatMap(functools.partial(_column_task, layout))
        .partitionBy(layout.item_blocks, block_of)
        .mapPartitionsWithIndex(functools.partial(_norms_task, layout))
        .collect()
    )
    norms = np.zeros(layout.n_items)
    for block, values in per_block:
        norms[block :: layout.item_blocks] = values
    return norms


def _collect_rows(rows: RDD[Any], layout: _Layout) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The users x items ``r`` matrix and the user weights (same structure), on the driver."""
    users, indices, r, weights = [], [], [], []
    for block, indptr, block_indices, block_r, block_weights in rows.map(_row_arrays).collect():
        local = np.arange(len(indptr) - 1, dtype=np.int64)
        users.append(np.repeat(local * layout.user_blocks + block, np.diff(indptr)))
        indices.append(block_indices)
        r.append(block_r)
        weights.append(block_weights)
    user = np.concatenate(users) if users else np.zeros(0, np.int64)
    order = np.argsort(user, kind="stable")  # rows in order; within a row, items stay sorted
    indptr = np.zeros(layout.n_users + 1, dtype=np.int32)
    np.cumsum(np.bincount(user, minlength=layout.n_users), out=indptr[1:])
    columns = np.concatenate(indices)[order] if indices else np.zeros(0, np.int32)
    shape = (layout.n_users, layout.n_items)
    seen = sp.csr_matrix(
        (np.concatenate(r)[order] if r else np.zeros(0, np.float32), columns, indptr), shape=shape
    )
    weight = sp.csr_matrix(
        (np.concatenate(weights)[order] if weights else np.zeros(0, np.float32), columns, indptr), shape=shape
    )
    return seen, weight
