"""``recforge train --engine spark`` and ``recforge precompute --engine spark``.

* :func:`~recforge.spark.build.events_frame` (:mod:`recforge.spark.build`) reads the event
  store's Parquet segments with Spark and aggregates them into ``(user, item, value)`` pairs;
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
from recforge.data.interactions import Interactions
from recforge.errors import RecforgeError
from recforge.models.base import FactorRecommender, Recommender
from recforge.pipeline.training import model_params
from recforge.precompute import item_source, popular_list
from recforge.spark.als import SparkALS
from recforge.spark.build import events_frame
from recforge.spark.topk import (
    RedisTarget,
    lists_array,
    recommend_all_users,
    similar_items_all_items,
    write_redis,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["events_frame", "precompute_version_spark", "train_version_spark"]

#: SparkALS parameters a ``[model.als]`` section may also set
SPARK_PARAMS = ("num_user_blocks", "num_item_blocks", "checkpoint_interval")


def train_version_spark(
    spark: SparkSession, home: str | Path, config: Config, model: str | None = None, store: str | None = None
) -> tuple[VersionInfo, float]:
    """Fit ALS (``[model.als]``'s parameters, plus the SparkALS ones) on the stored events with
    Spark and store it as a candidate version; returns it and the fit's seconds."""
    name = model or config.model.name
    if name != "als":
        raise RecforgeError(f"the Spark engine trains ALS only, not {name!r} (use --engine local)")
    params = model_params(config, name)
    try:
        estimator = SparkALS(**params)
    except TypeError as error:
        raise RecforgeError(f"bad parameters for model 'als' ([model.als]): {error}") from None
    pairs = events_frame(spark, home, config, implicit=bool(estimator.implicit))
    started = time.perf_counter()
    fitted = estimator.fit(pairs)
    seconds = time.perf_counter() - started
    interactions = Interactions(fitted.seen_, fitted.users_, fitted.items_, info={"events": None})
    popular = popular_list(interactions, config.pipeline.k_popular)
    extra = {
        "source": "recforge train --engine spark",
        "spark_params": {k: params.get(k) for k in SPARK_PARAMS},
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
