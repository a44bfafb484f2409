"""Spark's build: the event store's segments become ``(user, item, value)`` pairs.

* :func:`events_frame` reads the event store's Parquet segments with Spark, as they are, keeps
  the events a local build reads (none after the as-of time, no load-test events, no erased
  ones: :func:`readable_events`) and aggregates them into pairs with the weighting of
  ``[weighting]`` as of that time: the same ``r_ui`` as
  :func:`recforge.data.build.build_interactions` (implicit feedback), or the latest ``rating``
  event's value per pair (explicit ratings);
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

__all__ = ["events_frame", "readable_events", "strength_column", "weighted_pairs"]


def events_frame(
    spark: SparkSession,
    home: str | Path,
    config: Config,
    implicit: bool = True,
    as_of: datetime | None = None,
) -> DataFrame:
    """``(user, item, value)`` per pair from the event store's segments as of ``as_of``
    (default: now; see the module doc)."""
    from pyspark.sql import functions as F

    store = EventStore(home)
    segments = store.segments()
    if not segments:
        raise RecforgeError(f"no events in {Path(home) / 'events'}; ingest some first (recforge ingest FILE)")
    as_of = as_of or datetime.now(UTC)
    events = readable_events(
        spark, spark.read.parquet(*(str(s.path) for s in segments)), store, config, as_of
    )
    if not implicit:
        ratings = events.filter(F.col("event_type") == "rating")
        return ratings.groupBy(F.col("user_id").alias("user"), F.col("item_id").alias("item")).agg(
            F.max_by("value", "timestamp").alias("value")
        )
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


def weighted_pairs(events: DataFrame, weighting: Weighting) -> DataFrame:
    """``(user, item, value)``: per (``user_id``, ``item_id``) pair of ``events`` (the event
    schema's columns) the sum of :func:`strength_column`, positive sums only, as
    :meth:`recforge.Interactions.from_events` builds them. With decay the weighting's reference
    time must be set (:meth:`Weighting.as_of <recforge.weighting.Weighting.as_of>`)."""
    from pyspark.sql import functions as F

    pairs = events.groupBy(F.col("user_id").alias("user"), F.col("item_id").alias("item")).agg(
        F.sum(strength_column(weighting)).alias("value")
    )
    return pairs.filter(F.col("value") > 0)


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
