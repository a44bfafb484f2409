"""Ratings as the distributed trainers read them: ``(u int, i int, value double)`` with vocabularies.

* :func:`ratings_frame` checks a DataFrame of ``(user, item, value)`` rows (ids strings or
  integers, values finite numbers) and names its columns ``user``, ``item``, ``value``;
* :func:`vocabulary` is a column's sorted distinct ids (:meth:`Vocabulary.from_values`, as
  local training builds them), on the driver;
* :func:`indexed_pairs` maps the ids to dense indices by broadcast joins with the vocabularies;
* :func:`interactions_frame` is an :class:`~recforge.data.Interactions` (a build's train part,
  held by the driver) as indexed pairs: its ``r`` matrix, or its ratings for explicit feedback.

:class:`~recforge.spark.SparkALS` and :class:`~recforge.spark.SparkItemKNN` fit either a
DataFrame of ratings (``fit``: the three steps above) or indexed pairs with the vocabularies
they index (``fit_indexed``: what the pipeline's Spark engine gives them, the build's own
vocabularies, so the model matches the build's holdout).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from recforge.data.interactions import Interactions
from recforge.data.vocabulary import Vocabulary

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("recforge.spark")

__all__ = ["EmptyRatings", "indexed_pairs", "interactions_frame", "ratings_frame", "vocabulary"]


class EmptyRatings(ValueError):
    """A DataFrame of ratings without a row (:func:`ratings_frame`)."""


#: rows per partition of :func:`interactions_frame`'s DataFrame (at least two partitions)
PARTITION_ROWS = 1 << 20


def ratings_frame(ratings: DataFrame, user_col: str, item_col: str, value_col: str | None) -> DataFrame:
    """``(user string, item string, value double)``, checked: no null ids, finite values.
    Cached (the check, the vocabularies and the indexing read it): unpersist it when done."""
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
    frame = ratings.select(
        F.col(user_col).cast("string").alias("user"),
        F.col(item_col).cast("string").alias("item"),
        value.alias("value"),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    finite = (
        F.col("value").isNotNull() & ~F.isnan("value") & ~F.col("value").isin(float("inf"), float("-inf"))
    )
    row = frame.agg(
        F.count(F.lit(1)),
        F.count_if(F.col("user").isNull() | F.col("item").isNull()),
        F.count_if(~finite),
    ).first()
    assert row is not None
    total, null_ids, bad_values = int(row[0]), int(row[1]), int(row[2])
    log.info("spark: %s ratings read and checked in %.1f s", f"{total:,}", time.perf_counter() - started)
    if total == 0 or null_ids or bad_values:
        frame.unpersist()
    if total == 0:
        raise EmptyRatings("the ratings are empty")
    if null_ids:
        raise ValueError(f"{null_ids} ratings have a null user or item id")
    if bad_values:
        raise ValueError(f"{bad_values} ratings have a null, NaN or infinite value")
    return frame


def vocabulary(frame: DataFrame, column: str) -> Vocabulary:
    """The sorted distinct ids of ``column`` (``Vocabulary.from_values``, as local training)."""
    return Vocabulary.from_values(frame.select(column).distinct().toArrow().column(0))


def indexed_pairs(spark: SparkSession, frame: DataFrame, users: Vocabulary, items: Vocabulary) -> DataFrame:
    """``(u int, i int, value double)``: dense indices by broadcast joins with the vocabularies
    (rows whose id is in neither are dropped)."""
    from pyspark.sql import functions as F

    def index(vocab: Vocabulary, name: str) -> DataFrame:
        table = pa.table({name: vocab.array, f"{name}_index": np.arange(len(vocab), dtype=np.int32)})
        return F.broadcast(spark.createDataFrame(table))

    joined = frame.join(index(users, "user"), "user").join(index(items, "item"), "item")
    return joined.select(F.col("user_index").alias("u"), F.col("item_index").alias("i"), "value")


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
