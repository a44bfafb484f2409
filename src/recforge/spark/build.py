"""Spark's build: the event store's segments become ``(user, item, value)`` pairs.

* :func:`store_frame` reads the event store's Parquet segments with Spark, in place, optionally
  with each event's position in the store's order (segment, row: what "the later event" means);
* :func:`events_frame` aggregates them into pairs with the weighting of ``[weighting]``: the
  same ``r_ui`` as :meth:`recforge.Interactions.from_events` (implicit feedback), or the latest
  ``rating`` event's value per pair (explicit ratings, :func:`latest_ratings`);
* :func:`weighted_pairs` sums an event DataFrame's strengths per pair under a
  :class:`~recforge.weighting.Weighting`;
* :func:`strength_column` is the per-event strength ``w(t) * v * 0.5 ** (age / half_life)`` as a
  Spark column expression, generated from a ``Weighting``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from recforge.config import Config
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.weighting import SECONDS_PER_DAY, Weighting

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["events_frame", "latest_ratings", "store_frame", "strength_column", "weighted_pairs"]

#: the columns :func:`store_frame` adds with ``order=True``: the segment's first sequence number
#: and the row within it (the store's order, segments in commit order)
ORDER_COLUMNS = ("segment", "row")


def store_frame(spark: SparkSession, home: str | Path, *, order: bool = False) -> DataFrame:
    """The event store's live segments as one DataFrame (the event schema's columns), read in
    place; with ``order``, also :data:`ORDER_COLUMNS`."""
    from pyspark.sql import functions as F

    segments = EventStore(home).segments()
    if not segments:
        raise RecforgeError(f"no events in {Path(home) / 'events'}; ingest some first (recforge ingest FILE)")
    events = spark.read.parquet(*(str(s.path) for s in segments))
    if not order:
        return events
    return events.select(
        "*",
        F.regexp_extract(F.col("_metadata.file_name"), r"^seg-(\d+)-", 1).cast("long").alias("segment"),
        F.col("_metadata.row_index").alias("row"),
    )


def events_frame(spark: SparkSession, home: str | Path, config: Config, implicit: bool = True) -> DataFrame:
    """``(user, item, value)`` per pair from the event store's segments (see the module doc)."""
    if not implicit:
        return latest_ratings(store_frame(spark, home, order=True)).select("user", "item", "value")
    return weighted_pairs(store_frame(spark, home), config.weighting.value())


def latest_ratings(events: DataFrame) -> DataFrame:
    """``(user, item, value)``: per pair of ``events`` (with :data:`ORDER_COLUMNS`) the value of
    its newest ``rating`` event, ties in time going to the later one in the store's order, as
    :meth:`recforge.Interactions.from_events` builds ``ratings``."""
    from pyspark.sql import functions as F

    ratings = events.filter(F.col("event_type") == "rating")
    newest = F.struct(F.unix_micros(F.col("timestamp")), *(F.col(c) for c in ORDER_COLUMNS))
    return ratings.groupBy(F.col("user_id").alias("user"), F.col("item_id").alias("item")).agg(
        F.max_by("value", newest).alias("value")
    )


def weighted_pairs(events: DataFrame, weighting: Weighting) -> DataFrame:
    """``(user, item, value)``: per (``user_id``, ``item_id``) pair of ``events`` (the event
    schema's columns) the sum of :func:`strength_column`, positive sums only, as
    :meth:`recforge.Interactions.from_events` builds them."""
    from pyspark.sql import functions as F

    if weighting.half_life_days is not None and weighting.reference_time is None:
        row = events.agg(F.max(F.unix_micros(F.col("timestamp")))).first()
        newest = None if row is None or row[0] is None else int(row[0])
        weighting = weighting.resolved(0 if newest is None else newest)  # no events: any reference
    pairs = events.groupBy(F.col("user_id").alias("user"), F.col("item_id").alias("item")).agg(
        F.sum(strength_column(weighting)).alias("value")
    )
    return pairs.filter(F.col("value") > 0)


def strength_column(weighting: Weighting) -> Column:
    """Each event's ``w(t) * v * 0.5 ** (age / half_life)`` over the columns ``event_type``,
    ``value`` and ``timestamp``: :meth:`Weighting.strength <recforge.weighting.Weighting.strength>`
    as a Spark expression (a type not in the weights weighs 1.0; an event newer than the
    reference time has age 0). With decay the weighting's reference time must be set
    (:meth:`Weighting.resolved <recforge.weighting.Weighting.resolved>`)."""
    from pyspark.sql import functions as F

    event_type = F.col("event_type")
    weight: Column | None = None
    for name, value in weighting.weights.items():
        match = event_type == F.lit(name)
        weight = F.when(match, F.lit(value)) if weight is None else weight.when(match, F.lit(value))
    strength = (F.lit(1.0) if weight is None else weight.otherwise(F.lit(1.0))) * F.col("value")
    if weighting.half_life_days is None:
        return strength
    reference_us = weighting.reference_us
    if reference_us is None:
        raise ValueError("a decaying Weighting needs a reference time; use .resolved(newest_us)")
    age = F.greatest(F.lit(reference_us / 1e6) - F.col("timestamp").cast("double"), F.lit(0.0))
    return strength * F.pow(F.lit(0.5), age / F.lit(weighting.half_life_days * SECONDS_PER_DAY))
