"""Spark's build: the event store's segments become ``(user, item, value)`` pairs.

* :func:`store_frame` reads the event store's Parquet segments with Spark, in place, optionally
  with each event's position in the store's order (segment, row: what "the later event" means);
* :func:`readable_events` keeps the events a local build reads (none after the as-of time, no
  load-test events, no erased ones);
* :func:`events_frame` aggregates them into pairs with the weighting of ``[weighting]`` as of
  that time: the same ``r_ui`` as :func:`recforge.data.build.build_interactions` (implicit
  feedback), or the latest ``rating`` event's value per pair (explicit ratings,
  :func:`latest_ratings`);
* :func:`weighted_pairs` sums an event DataFrame's strengths per pair under a
  :class:`~recforge.weighting.Weighting`;
* :func:`strength_column` is the per-event strength ``w(t) * v * 0.5 ** (age / half_life)`` as a
  Spark column expression, generated from a ``Weighting``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from recforge._time import to_us
from recforge.config import Config
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.weighting import SECONDS_PER_DAY, Weighting

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = [
    "events_frame",
    "latest_ratings",
    "readable_events",
    "store_frame",
    "strength_column",
    "weighted_pairs",
]

#: the columns :func:`store_frame` adds with ``order=True``: the segment's first sequence number
#: and the row within it (the store's order, segments in commit order)
ORDER_COLUMNS = ("segment", "row")


def store_frame(spark: SparkSession, home: str | Path, *, order: bool = False) -> DataFrame:
    """The event store's live segments as one DataFrame (the event schema's columns), read in
    place; with ``order``, also :data:`ORDER_COLUMNS`."""
    from pyspark.sql import functions as F

    store = EventStore(home)
    segments = store.segments()
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


def events_frame(
    spark: SparkSession,
    home: str | Path,
    config: Config,
    implicit: bool = True,
    as_of: datetime | None = None,
) -> DataFrame:
    """``(user, item, value)`` per pair from the event store's segments as of ``as_of``
    (default: now; see the module doc)."""
    as_of = as_of or datetime.now(UTC)
    events = readable_events(
        spark, store_frame(spark, home, order=not implicit), EventStore(home), config, as_of
    )
    if not implicit:
        return latest_ratings(events).select("user", "item", "value")
    return weighted_pairs(events, config.weighting.value().as_of(as_of))


def readable_events(
    spark: SparkSession, events: DataFrame, store: EventStore, config: Config, as_of: datetime
) -> DataFrame:
    """The events a build reads: stamped at or before ``as_of``, not load-test traffic
    (``[data] loadtest_prefix``), not erased by a tombstone (a left anti-join on the user)."""
    from pyspark.sql import functions as F

    events = events.filter(F.unix_micros(F.col("timestamp")) <= F.lit(to_us(as_of)))
    prefix = config.data.loadtest_prefix
    if prefix:
        events = events.filter(~F.coalesce(F.col("event_id"), F.lit("")).startswith(prefix))
    stones = store.tombstones.table()
    if stones.num_rows:
        t = spark.createDataFrame(stones.to_pandas()).select(
            F.col("user_id").alias("t_user"),
            F.col("item_id").alias("t_item"),
            F.col("before_us").alias("t_before"),
        )
        erased = (
            (F.col("user_id") == F.col("t_user"))
            & (F.col("t_item").isNull() | (F.col("t_item") == F.col("item_id")))
            & (F.unix_micros(F.col("timestamp")) < F.col("t_before"))
        )
        events = events.join(F.broadcast(t), erased, "left_anti")
    return events


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
    schema's columns) the sum of :func:`strength_column`, the sums positive in float32 only (a
    sum that decayed below float32's range is left out), as
    :meth:`recforge.Interactions.from_events` builds them. With decay the weighting's reference
    time must be set (:meth:`Weighting.as_of <recforge.weighting.Weighting.as_of>`)."""
    from pyspark.sql import functions as F

    pairs = events.groupBy(F.col("user_id").alias("user"), F.col("item_id").alias("item")).agg(
        F.sum(strength_column(weighting)).alias("value")
    )
    return pairs.filter(F.col("value").cast("float") > 0)


def strength_column(weighting: Weighting) -> Column:
    """Each event's ``w(t) * v * 0.5 ** (age / half_life)`` over the columns ``event_type``,
    ``value`` and ``timestamp``: :meth:`Weighting.strength <recforge.weighting.Weighting.strength>`
    as a Spark expression (a type not in the weights weighs 1.0; an event newer than the
    reference time has age 0). With decay the weighting's reference time must be set
    (:meth:`Weighting.as_of <recforge.weighting.Weighting.as_of>`)."""
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
        raise ValueError("a decaying Weighting needs a reference time: the as-of time, see .as_of(when)")
    age = F.greatest(F.lit(reference_us / 1e6) - F.col("timestamp").cast("double"), F.lit(0.0))
    return strength * F.pow(F.lit(0.5), age / F.lit(weighting.half_life_days * SECONDS_PER_DAY))
