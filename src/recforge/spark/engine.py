"""The Spark engine: ``recforge train | precompute --engine spark``.

:class:`SparkEngine` implements :class:`recforge.pipeline.engine.Engine` on a Spark session:

* :meth:`~SparkEngine.fit` reads the event store's Parquet segments with Spark, as they are,
  aggregates them into ``(user, item, value)`` pairs (:func:`~recforge.spark.build.events_frame`:
  the ``r_ui`` of the local build, or the latest rating per pair for explicit ALS) and fits
  :class:`~recforge.spark.SparkALS` on them (``[model.als]``'s parameters, plus the SparkALS ones);
* :meth:`~SparkEngine.lists` computes the lists with the distributed top-K, writes them as
  Parquet (``<home>/spark/lists/<uuid>``, deleted afterwards) and reads them back as the
  artifact's arrays; copying them into a Redis list store is done from the executors, straight
  from that Parquet.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from recforge._time import iso
from recforge.config import Config
from recforge.data.interactions import Interactions
from recforge.errors import RecforgeError
from recforge.lists import Lists, RedisLists
from recforge.models.als import ALS
from recforge.models.base import FactorRecommender, Recommender
from recforge.pipeline.engine import ComputedLists, Engine, Fit, FitCallback
from recforge.pipeline.training import make_model, model_params
from recforge.precompute import item_source, popular_list
from recforge.spark.als import SparkALS
from recforge.spark.build import events_frame
from recforge.spark.session import managed_session
from recforge.spark.topk import (
    RedisTarget,
    lists_array,
    recommend_all_users,
    similar_items_all_items,
    write_redis,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SPARK_PARAMS", "SparkEngine"]

#: SparkALS parameters a ``[model.als]`` section may also set
SPARK_PARAMS = ("num_user_blocks", "num_item_blocks", "checkpoint_interval")


class SparkEngine(Engine):
    """Training and precomputation on ``spark`` (see the module doc)."""

    name = "spark"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    @classmethod
    @contextlib.contextmanager
    def open(cls, master: str = "local[2]", driver_memory: str = "4g") -> Iterator[SparkEngine]:
        """An engine on the active session, or on a new one on ``master`` stopped on exit."""
        with managed_session(master, driver_memory=driver_memory) as spark:
            yield cls(spark)

    def fit(self, home: Path, config: Config, model: str, callback: FitCallback | None = None) -> Fit:
        if model != "als":
            raise RecforgeError(f"the Spark engine trains ALS only, not {model!r} (use --engine local)")
        params = model_params(config, model)
        spark_params = {k: params.pop(k) for k in SPARK_PARAMS if k in params}
        als = make_model(model, params)
        assert isinstance(als, ALS)
        read_at = datetime.now(UTC)  # the as-of time of the build, and when its events were read
        pairs = events_frame(self.spark, home, config, implicit=bool(als.implicit), as_of=read_at)
        fitted = SparkALS(als, **spark_params).fit(pairs)
        info = {"events": None, "as_of": iso(read_at), "read_at": iso(read_at)}
        return Fit(
            fitted,
            Interactions(fitted.seen_, fitted.users_, fitted.items_, info=info),
            {"spark_params": {k: spark_params.get(k) for k in SPARK_PARAMS}},
        )

    @contextlib.contextmanager
    def lists(
        self, model: Recommender, interactions: Interactions, config: Config
    ) -> Iterator[ComputedLists]:
        if not isinstance(model, FactorRecommender):
            raise RecforgeError(f"the Spark engine precomputes factor models only, not {model.name!r}")
        settings = config.pipeline
        scratch = Path(config.home) / "spark" / "lists" / uuid.uuid4().hex
        try:
            users = recommend_all_users(self.spark, model, settings.k_users, path=scratch / "users")
            items = similar_items_all_items(self.spark, model, settings.k_items, path=scratch / "items")
            lists = Lists(
                lists_array(users, len(model.users_), settings.k_users),
                lists_array(items, len(model.items_), settings.k_items),
                popular_list(interactions, settings.k_popular),
                item_source(model),
            )
            yield _SparkLists(lists, users, items)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


class _SparkLists(ComputedLists):
    def __init__(self, lists: Lists, users: DataFrame, items: DataFrame) -> None:
        self.lists = lists
        self._frames = {"users": users, "items": items}

    def copy_to(self, redis: RedisLists, version: str, model: Recommender) -> None:
        target = RedisTarget(redis.url, version, redis.prefix)
        redis.begin(version)
        for part, frame in self._frames.items():
            write_redis(frame, target, part)
        redis.finish(version, self.lists.popular)
