"""Scale-out on Apache Spark: block-partitioned ALS and broadcast batch top-K.

An optional extra (``pip install 'recforge[spark]'``, and Java 17): pyspark is imported only
when a Spark feature is used, with a clear error when it is missing. The same model artifacts
come out as from local training, so the same server serves them.

* :class:`SparkALS` (:mod:`recforge.spark.als`): ALS fitted on a DataFrame of (user, item, value).
* :class:`SparkItemKNN` (:mod:`recforge.spark.itemknn`): ItemKNN's neighbour lists as a blocked
  sparse product, the same bits as a local fit.
* :func:`recommend_all_users`, :func:`similar_items_all_items` (:mod:`recforge.spark.topk`): top-K
  lists for every user / item, item factors broadcast, written as Parquet; :func:`write_redis`
  copies them from the executors straight into the Redis list store, :func:`lists_array`
  reads them back as the artifact's arrays.
* :func:`~recforge.spark.build.events_frame` (:mod:`recforge.spark.build`): the event store's
  segments as weighted (user, item, value) pairs, the expression generated from a
  :class:`~recforge.weighting.Weighting`.
* :class:`~recforge.spark.engine.SparkEngine`: ``recforge train | precompute --engine spark``;
  :mod:`recforge.spark.build` reads the event store with Spark and weights it.
* :func:`spark_session`, :func:`managed_session` (:mod:`recforge.spark.session`).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "RedisTarget",
    "SparkALS",
    "SparkItemKNN",
    "lists_array",
    "managed_session",
    "recommend_all_users",
    "similar_items_all_items",
    "spark_session",
    "write_redis",
]

_WHERE = {
    "SparkALS": "recforge.spark.als",
    "SparkItemKNN": "recforge.spark.itemknn",
    "RedisTarget": "recforge.spark.topk",
    "recommend_all_users": "recforge.spark.topk",
    "similar_items_all_items": "recforge.spark.topk",
    "lists_array": "recforge.spark.topk",
    "write_redis": "recforge.spark.topk",
    "managed_session": "recforge.spark.session",
    "spark_session": "recforge.spark.session",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'recforge.spark' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
