"""``recforge train --engine spark`` and ``recforge precompute --engine spark``.

* :func:`events_frame` reads the event store's Parquet segments with Spark, as they are, and
  aggregates them into ``(user, item, value)`` pairs with the weighting of ``[weighting]``: the
  same ``r_ui`` as :meth:`recforge.Interactions.from_events` (implicit feedback), or the latest
  ``rating`` event's value per pair (explicit ratings);
* :func:`train_version_spark` fits :class:`~recforge.spark.SparkALS` on them and stores a
  candidate version, its lists computed by the distributed top-K;
* :func:`precompute_version_spark` recomputes a version's lists with the distributed top-K.

Both write the lists as Parquet first (``<home>/spark/lists/<name>``), build the artifact from
them, and with a Redis ``store`` copy them straight from the executors into the list store.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recforge.artifacts import ModelRegistry, VersionInfo
from recforge.config import Config
from recforge.data.build import parse_time
from recforge.data.interactions import Interactions
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.models.als import ALS
from recforge.models.base import FactorRecommender, Recommender
from recforge.pipeline.training import make_model, model_params
from recforge.precompute import item_source, popular_list
from recforge.spark.als import SparkALS
from recforge.spark.topk import (
    RedisTarget,
    lists_array,
    recommend_all_users,
    similar_items_all_items,
    write_redis,
)
from recforge.weighting import SECONDS_PER_DAY

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["events_frame", "precompute_version_spark", "train_version_spark"]

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


def train_version_spark(
    spark: SparkSession, home: str | Path, config: Config, model: str | None = None, store: str | None = None
) -> tuple[VersionInfo, float]:
    """Fit ALS (``[model.als]``'s parameters, plus the SparkALS ones) on the stored events with
    Spark and store it as a candidate version; returns it and the fit's seconds."""
    name = model or config.model.name
    if name != "als":
        raise RecforgeError(f"the Spark engine trains ALS only, not {name!r} (use --engine local)")
    params = model_params(config, name)
    spark_params = {k: params.pop(k) for k in SPARK_PARAMS if k in params}
    als = make_model(name, params)
    assert isinstance(als, ALS)
    estimator = SparkALS(als, **spark_params)
    pairs = events_frame(spark, home, config, implicit=bool(als.implicit))
    started = time.perf_counter()
    fitted = estimator.fit(pairs)
    seconds = time.perf_counter() - started
    interactions = Interactions(fitted.seen_, fitted.users_, fitted.items_, info={"events": None})
    popular = popular_list(interactions, config.pipeline.k_popular)
    extra = {
        "source": "recforge train --engine spark",
        "spark_params": {k: spark_params.get(k) for k in SPARK_PARAMS},
    }
    info = _store(spark, home, config, fitted, popular, store, extra=extra)
    return info, seconds


def precompute_version_spark(
    spark: SparkSession,
    home: str | Path,
    config: Config,
    version: str | None = None,
    store: str | None = None,
) -> VersionInfo:
    """Recompute the lists of ``version`` (default: the published one) with ``[pipeline]``'s
    sizes and the distributed top-K into a new candidate version. The popular list is the
    version's own (it needs the events, not the model), at most ``k_popular`` long."""
    registry = ModelRegistry(home)
    version = version or registry.current()
    if version is None:
        raise RecforgeError("nothing is published; name a version with --version")
    info = registry.get(version)
    fitted = Recommender.load(registry.versions_dir / version / "model", mmap=False)
    if not isinstance(fitted, FactorRecommender):
        raise RecforgeError(f"the Spark engine precomputes factor models only; {version} is {fitted.name!r}")
    artifact = registry.open(version)
    k = config.pipeline.k_popular
    popular = (np.asarray(artifact.popular_ids[:k]), np.asarray(artifact.popular_scores[:k]))
    extra = {key: v for key, v in (info.manifest.get("extra") or {}).items() if key != "train_key"}
    new = _store(
        spark,
        home,
        config,
        fitted,
        popular,
        store,
        extra={**extra, "precomputed_from": version, "engine": "spark"},
        metrics=info.metrics,
        data_window=info.manifest.get("data_window"),
    )
    if info.status == "rejected":
        registry.reject(new.version, info.reason)
        new = registry.get(new.version)
    return new


def _store(
    spark: SparkSession,
    home: str | Path,
    config: Config,
    model: FactorRecommender,
    popular: tuple[np.ndarray, np.ndarray],
    store: str | None,
    *,
    extra: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    data_window: dict[str, Any] | None = None,
) -> VersionInfo:
    settings = config.pipeline
    scratch = Path(home) / "spark" / "lists" / uuid.uuid4().hex
    try:
        users = recommend_all_users(spark, model, settings.k_users, path=scratch / "users")
        items = similar_items_all_items(spark, model, settings.k_items, path=scratch / "items")
        info = ModelRegistry(home).create(
            model,
            user_lists=lists_array(users, len(model.users_), settings.k_users),
            item_lists=lists_array(items, len(model.items_), settings.k_items),
            popular=popular,
            metrics=metrics or {},
            data_window=data_window or {},
            config_hash=config.output_hash(),
            item_source=item_source(model),
            extra=extra,
        )
        if store is not None:
            target = RedisTarget(store, info.version, config.serving.redis_prefix)
            write_redis(users, target, "users")
            write_redis(items, target, "items")
            target.finish(popular)
        return info
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
