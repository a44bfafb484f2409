"""The event store on Spark: :func:`events_frame` reads the store's Parquet segments with Spark,
as they are, and aggregates them into ``(user, item, value)`` pairs with the weighting of
``[weighting]``: the same ``r_ui`` as :meth:`recforge.Interactions.from_events` (implicit
feedback), or the latest ``rating`` event's value per pair (explicit ratings).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from recforge._time import parse_time
from recforge.config import Config
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.weighting import SECONDS_PER_DAY

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SPARK_PARAMS", "events_frame"]

#: SparkALS parameters a ``[model.als]`` section may also set
SPARK_PARAMS = ("num_user_blocks", "num_item_blocks", "checkpoint_interval")


def events_frame(spark: SparkSession, home: str | Path, config: Config, implicit: bool = True) -> DataFrame:
    """``(user, item, value)`` per pair from the event store's segments (see the module doc)."""
    from pyspark.sql import functions as F

    segments = EventStore(home).segments()
    if not segments:
        raise RecforgeError(f"no events in {Path(home) / 'events'}; ingest some first (recforge ingest FILE)")
    events = spark.read.parquet(*(str(s.path) for s in segments))
    seconds = F.col("timestamp").cast("double")
    if not implicit:
        ratings = events.filter(F.col("event_type") == "rating")
        return ratings.groupBy(F.col("user_id").alias("user"), F.col("item_id").alias("item")).agg(
            F.max_by("value", "timestamp").alias("value")
        )
    weighting = config.weighting
    weight = F.lit(1.0)
    for name, value in weighting.weights.items():
        weight = F.when(F.col("event_type") == name, F.lit(float(value))).otherwise(weight)
    strength = weight * F.col("value")
    if weighting.half_life_days:
        if weighting.reference_time:
            reference = parse_time(weighting.reference_time).timestamp()
        else:
            row = events.agg(F.max(seconds)).first()
            reference = float(row[0]) if row is not None else 0.0
        age = F.greatest(F.lit(reference) - seconds, F.lit(0.0))
        strength = strength * F.pow(
            F.lit(0.5), age / F.lit(float(weighting.half_life_days) * SECONDS_PER_DAY)
        )
    pairs = events.groupBy(F.col("user_id").alias("user"), F.col("item_id").alias("item")).agg(
        F.sum(strength).alias("value")
    )
    return pairs.filter(F.col("value") > 0)
