"""Ratings as the distributed trainers read them: ``(u int, i int, value double)`` with vocabularies.

* :func:`checked_ratings` checks a DataFrame of ``(user, item, value)`` rows (ids strings or
  integers, values finite numbers), names its columns ``user``, ``item``, ``value`` and gives its
  :func:`vocabularies`;
* :func:`vocabularies` are two columns' sorted distinct ids (:meth:`Vocabulary.from_values`, as
  local training builds them), on the driver;
* :class:`IdIndex` and :func:`pair_chunks` map the ids to dense indices against the broadcast
  vocabularies, in the trainers' first map over the ratings (no join, no pass of its own);
* :func:`interactions_frame` is an :class:`~recforge.data.Interactions` (a build's train part,
  held by the driver) as indexed pairs: its ``r`` matrix, or its ratings for explicit feedback.

:class:`~recforge.spark.SparkALS` and :class:`~recforge.spark.SparkItemKNN` fit either a
DataFrame of ratings (``fit``: :func:`checked_ratings`, then an :class:`IdIndex` in their first
map) or indexed pairs with the vocabularies they index (``fit_indexed``: what the pipeline's
Spark engine gives them, the build's own vocabularies, so the model matches the build's
holdout).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from recforge.data.interactions import Interactions
from recforge.data.vocabulary import Vocabulary
from recforge.spark import blocks

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("recforge.spark")

__all__ = [
    "EmptyRatings",
    "IdIndex",
    "checked_ratings",
    "interactions_frame",
    "pair_chunks",
    "pair_columns",
    "vocabularies",
]


class EmptyRatings(ValueError):
    """A DataFrame of ratings without a row (:func:`checked_ratings`)."""


#: rows per partition of :func:`interactions_frame`'s DataFrame (at least two partitions)
PARTITION_ROWS = 1 << 20


def checked_ratings(
    ratings: DataFrame, user_col: str, item_col: str, value_col: str | None
) -> tuple[DataFrame, Vocabulary, Vocabulary]:
    """``(user, item, value double)`` and its two :func:`vocabularies`, checked: ids strings or
    integers (they keep their type), none null, values finite numbers.

    The frame is cached here unless ``ratings`` already is (the check, the vocabularies and the
    indexing each read it): unpersist it when done. The check and the two distinct-id jobs run
    at once, from three driver threads: each Spark job has a fixed latency of most of a second
    on a small cluster, and they share no stage."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    fields = {f.name: f.dataType for f in ratings.schema.fields}
    for column in (user_col, item_col, value_col):
        if column is not None and column not in fields:
            raise ValueError(f"the ratings have no column {column!r}; columns: {sorted(fields)}")
    for column in (user_col, item_col):
        if not isinstance(fields[column], T.StringType | T.IntegralType):
            raise ValueError(
                f"ids must be strings or integers; {column!r} is {fields[column].simpleString()}"
            )
    if value_col is not None and not isinstance(fields[value_col], T.NumericType):
        raise ValueError(f"values must be numbers; {value_col!r} is {fields[value_col].simpleString()}")
    started = time.perf_counter()
    value = F.col(value_col).cast("double") if value_col is not None else F.lit(1.0)
    frame = ratings.select(F.col(user_col).alias("user"), F.col(item_col).alias("item"), value.alias("value"))
    if not ratings.storageLevel.useMemory and not ratings.storageLevel.useDisk:
        frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
    finite = (
        F.col("value").isNotNull() & ~F.isnan("value") & ~F.col("value").isin(float("inf"), float("-inf"))
    )
    check = frame.agg(
        F.count(F.lit(1)),
        F.count_if(F.col("user").isNull() | F.col("item").isNull()),
        F.count_if(~finite),
    )
    with ThreadPoolExecutor(3, thread_name_prefix="recforge-spark") as pool:
        counts = pool.submit(check.first)
        users, items = pool.submit(_distinct, frame, "user"), pool.submit(_distinct, frame, "item")
        row = counts.result()
        assert row is not None
        total, null_ids, bad_values = int(row[0]), int(row[1]), int(row[2])
        problem = (
            EmptyRatings("the ratings are empty")
            if total == 0
            else ValueError(f"{null_ids} ratings have a null user or item id")
            if null_ids
            else ValueError(f"{bad_values} ratings have a null, NaN or infinite value")
            if bad_values
            else None
        )
        if problem is not None:
            frame.unpersist()
            raise problem
        vocabs = users.result(), items.result()
    log.info(
        "spark: %s ratings read and checked, %s users x %s items, in %.1f s",
        f"{total:,}",
        f"{len(vocabs[0]):,}",
        f"{len(vocabs[1]):,}",
        time.perf_counter() - started,
    )
    return frame, *vocabs


def vocabularies(frame: DataFrame, user_col: str, item_col: str) -> tuple[Vocabulary, Vocabulary]:
    """The sorted distinct ids of the two columns (``Vocabulary.from_values``, as local training
    builds them; integers as their decimal strings); the two Spark jobs run at once."""
    with ThreadPoolExecutor(2, thread_name_prefix="recforge-spark") as pool:
        users, items = pool.submit(_distinct, frame, user_col), pool.submit(_distinct, frame, item_col)
        return users.result(), items.result()


def _distinct(frame: DataFrame, column: str) -> Vocabulary:
    """One column's vocabulary: distinct on the column's own type, strings only after."""
    from pyspark.sql import functions as F

    ids = frame.select(column).distinct()
    return Vocabulary.from_values(ids.select(F.col(column).cast("string")).toArrow().column(0))


class IdIndex:
    """The two vocabularies, broadcast, as executors look ids up in them: ``lookup`` maps a
    table's ``user`` and ``item`` columns (strings, or integers compared by value) to their dense
    indices, ``-1`` where an id is in neither. The hash tables are built once per task, on its
    first lookup."""

    def __init__(self, frame: DataFrame, users: Vocabulary, items: Vocabulary) -> None:
        from pyspark.sql import types as T

        integral = {f.name: isinstance(f.dataType, T.IntegralType) for f in frame.schema.fields}
        self._keys = frame.sparkSession.sparkContext.broadcast(
            (_lookup_keys(users, integral["user"]), _lookup_keys(items, integral["item"]))
        )
        self._tables: tuple[Any, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_keys": self._keys, "_tables": None}  # executors build their own tables

    def lookup(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """The ``user`` and ``item`` indices of ``table``'s rows (int64, ``-1``: unknown)."""
        import pandas as pd

        if self._tables is None:
            user_keys, item_keys = self._keys.value
            self._tables = pd.Index(user_keys), pd.Index(item_keys)
        users, items = self._tables
        return (
            users.get_indexer(table.column("user").to_numpy()),
            items.get_indexer(table.column("item").to_numpy()),
        )


def _lookup_keys(vocab: Vocabulary, integral: bool) -> np.ndarray:
    """The vocabulary's ids as the frame holds them: int64 for integer columns, else objects."""
    if integral:
        return np.asarray(vocab.array.cast(pa.int64()))
    return np.asarray(vocab.array.to_pylist(), dtype=object)


def pair_columns(index: IdIndex | None) -> tuple[str, str, str]:
    """The columns :func:`pair_chunks` reads: indexed pairs' ``u, i, value``, or with ``index``
    the ratings' ``user, item, value``."""
    return ("u", "i", "value") if index is None else ("user", "item", "value")


def pair_chunks(
    batches: Iterator[pa.RecordBatch], index: IdIndex | None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Executor: a partition's pairs as ``(u int32, i int32, value float64)`` arrays, in chunks
    of at least :data:`~recforge.spark.blocks.FLUSH_ROWS` rows (the last one may be shorter), in
    input order. The batches' columns are :func:`pair_columns`: with ``index``, the ids are
    looked up in it (rows with an unknown id dropped), so a trainer's first map also indexes."""
    pending: list[pa.RecordBatch] = []
    rows = 0

    def chunk() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        table = pa.Table.from_batches(pending)
        value = table.column("value").to_numpy().astype(np.float64)
        if index is None:
            u, i = (table.column(name).to_numpy().astype(np.int32) for name in ("u", "i"))
            return u, i, value
        u, i = index.lookup(table)
        known = (u >= 0) & (i >= 0)
        return u[known].astype(np.int32), i[known].astype(np.int32), value[known]

    for batch in batches:
        if batch.num_rows:
            pending.append(batch)
            rows += batch.num_rows
        if rows >= blocks.FLUSH_ROWS:
            yield chunk()
            pending, rows = [], 0
    if pending:
        yield chunk()


def interactions_frame(
    spark: SparkSession, interactions: Interactions, *, ratings: bool = False
) -> DataFrame:
    """The stored pairs of ``interactions.matrix`` (or, with ``ratings``, of its ratings when it
    has any) as ``(u int, i int, value double)``, the values exactly the stored float32 ones."""
    matrix = interactions.ratings if ratings and interactions.ratings is not None else interactions.matrix
    coo = matrix.tocoo()
    table = pa.table(
        {
            "u": coo.row.astype(np.int32),
            "i": coo.col.astype(np.int32),
            "value": coo.data.astype(np.float32).astype(np.float64),
        }
    )
    partitions = max(2, -(-table.num_rows // PARTITION_ROWS))
    return spark.createDataFrame(table).repartition(partitions)
