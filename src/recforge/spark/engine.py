"""The Spark engine: every stage that grows with the data on a Spark cluster.

:class:`SparkEngine` implements :class:`recforge.pipeline.engine.Engine` on a Spark session
(``recforge pipeline run --engine spark``, ``[engine] name = "spark"``, ``recforge train |
precompute --engine spark``):

* :meth:`~SparkEngine.split`: the temporal holdout split of the event store's segments, read in
  place (:func:`~recforge.spark.holdout.holdout_split`), into the CSR matrices and
  vocabularies of the build;
* :meth:`~SparkEngine.fit_model`: ALS with :class:`~recforge.spark.SparkALS` and ItemKNN with
  :class:`~recforge.spark.SparkItemKNN` on a build's train part (its pairs shipped to the
  executors, the build's vocabularies kept); models without a distributed trainer (``bpr``,
  ``popular``) are fitted on the driver, and the log says so;
* :meth:`~SparkEngine.recommend`: an evaluation's lists on the executors
  (:func:`~recforge.spark.topk.recommend_lists`);
* :meth:`~SparkEngine.lists`: the precomputed lists with the distributed top-K, written as
  Parquet (``<home>/spark/lists/<uuid>``, deleted afterwards) and read back as the artifact's
  arrays; copying them into a Redis list store is done from the executors, from that Parquet;
* :meth:`~SparkEngine.fit` (``recforge train``): ALS or ItemKNN straight from the event store's
  segments (:func:`~recforge.spark.build.events_frame`).

The blocks of SparkALS and SparkItemKNN come from ``[model.<name>]`` (:data:`SPARK_PARAMS`),
else one per core of the cluster (``defaultParallelism``). A fit records its iterations
(``loss``, ``seconds``) in what it returns, for the run record and the version's manifest.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recforge._time import iso
from recforge.catalog import Catalog
from recforge.config import Config
from recforge.data.build import decayed_away
from recforge.data.interactions import Interactions
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.lists import Lists, RedisLists
from recforge.models.als import ALS
from recforge.models.base import FitProgress, Recommender
from recforge.models.itemknn import ItemKNN
from recforge.pipeline.engine import Built, ComputedLists, Engine, Fit, FitCallback, catalog_extra
from recforge.pipeline.holdout import Holdout
from recforge.pipeline.training import make_model, model_params
from recforge.precompute import item_source, popular_list
from recforge.spark.als import SparkALS
from recforge.spark.build import events_frame
from recforge.spark.heartbeat import heartbeat
from recforge.spark.holdout import holdout_split
from recforge.spark.itemknn import SparkItemKNN
from recforge.spark.pairs import EmptyRatings, interactions_frame
from recforge.spark.session import managed_session
from recforge.spark.topk import (
    RedisTarget,
    lists_array,
    recommend_all_users,
    recommend_lists,
    similar_items_all_items,
    write_redis,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SPARK_PARAMS", "SparkEngine"]

log = logging.getLogger("recforge.spark")

#: the Spark settings a ``[model.<name>]`` section may hold besides the model's parameters
SPARK_PARAMS: dict[str, tuple[str, ...]] = {
    "als": ("num_user_blocks", "num_item_blocks", "checkpoint_interval"),
    "itemknn": ("num_user_blocks", "num_item_blocks"),
}


class SparkEngine(Engine):
    """The stages that grow with the data on ``spark`` (see the module doc)."""

    name = "spark"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    @classmethod
    @contextlib.contextmanager
    def open(cls, master: str = "local[2]", **options: Any) -> Iterator[SparkEngine]:
        """An engine on the active session, or on a new one on ``master`` (``options`` as
        :func:`~recforge.spark.session.spark_session` takes them) stopped on exit; while it is
        open, a silent Spark job says what it is doing every few seconds
        (:mod:`recforge.spark.heartbeat`)."""
        with managed_session(master, **options) as spark, heartbeat(spark.sparkContext):
            yield cls(spark)

    # the pipeline's stages ------------------------------------------------------------------
    def split(self, home: Path, holdout: Holdout, config: Config) -> Built:
        return holdout_split(self.spark, home, holdout, config)

    def model(self, name: str, params: dict[str, Any]) -> Recommender:
        own = SPARK_PARAMS.get(name, ())
        return make_model(name, {k: v for k, v in params.items() if k not in own})

    def fit_model(
        self,
        name: str,
        params: dict[str, Any],
        train: Interactions,
        callback: FitCallback | None = None,
        catalog: Catalog | None = None,
    ) -> Fit:
        model = self.model(name, params)
        if not isinstance(model, (ALS, ItemKNN)):
            log.info("spark: %s has no distributed trainer; fitting it on the driver", name)
            return Fit(model.fit(train, callback, catalog=catalog), train, catalog_extra(catalog))
        if catalog is not None:  # every catalog item listed; new arrivals get factors below
            train = train.with_items(catalog.item_ids)
        settings = self._settings(name, params)
        record = _Record(callback)
        if isinstance(model, ALS):
            pairs = interactions_frame(self.spark, train, ratings=not model.implicit)
            fitted: Recommender = SparkALS(model, **settings).fit_indexed(
                pairs, train.users, train.items, record
            )
            fitted.seen_ = train.matrix  # explicit fits train on the ratings; what was seen is r's
        else:
            pairs = interactions_frame(self.spark, train)
            fitted = SparkItemKNN(model, **settings).fit_indexed(pairs, train.users, train.items)
        if catalog is not None and len(catalog):
            fitted.fit_cold_start(catalog)  # on the driver: a ridge map over the item factors
        return Fit(fitted, train, {**record.extra(settings), **catalog_extra(catalog)})

    def recommend(self, model: Recommender, users: np.ndarray, k: int) -> np.ndarray:
        return recommend_lists(self.spark, model, users, k)

    # recforge train | precompute ---------------------------------------------------------------
    def fit(self, home: Path, config: Config, model: str, callback: FitCallback | None = None) -> Fit:
        params = model_params(config, model)
        estimator = self.model(model, params)
        settings = self._settings(model, params)
        record = _Record(callback)
        read_at = datetime.now(UTC)  # the as-of time of the build, and when its events were read
        if not isinstance(estimator, ALS | ItemKNN):
            raise RecforgeError(
                f"the Spark engine trains als and itemknn from the event store, not {model!r} "
                "(use --engine local, or the pipeline, which fits it on the driver)"
            )
        implicit = not isinstance(estimator, ALS) or bool(estimator.implicit)
        pairs = events_frame(self.spark, home, config, implicit=implicit, as_of=read_at)
        try:
            if isinstance(estimator, ALS):
                fitted: ALS | ItemKNN = SparkALS(estimator, **settings).fit(pairs, callback=record)
            else:
                fitted = SparkItemKNN(estimator, **settings).fit(pairs)
        except EmptyRatings:
            raise _nothing_to_fit(home, config, read_at) from None
        return Fit(
            fitted,
            Interactions(
                fitted.seen_,
                fitted.users_,
                fitted.items_,
                info={"events": None, "as_of": iso(read_at), "read_at": iso(read_at)},
            ),
            record.extra(settings),
        )

    @contextlib.contextmanager
    def lists(
        self, model: Recommender, interactions: Interactions, config: Config
    ) -> Iterator[ComputedLists]:
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
            log.info(
                "spark: lists of %s users x %d, %s items x %d",
                f"{len(model.users_):,}",
                settings.k_users,
                f"{len(model.items_):,}",
                settings.k_items,
            )
            yield _SparkLists(lists, users, items)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _settings(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """The Spark settings of model ``name``: from ``params``, blocks defaulting to the
        cluster's cores."""
        own = SPARK_PARAMS.get(name, ())
        cores = max(1, int(self.spark.sparkContext.defaultParallelism))
        settings = {key: cores for key in own if key.endswith("_blocks")}
        settings.update({k: v for k, v in params.items() if k in own})
        return settings


class _Record:
    """A fit callback keeping each iteration's loss and seconds, passing them on to ``then``."""

    def __init__(self, then: FitCallback | None) -> None:
        self.then = then
        self.iterations: list[dict[str, float]] = []

    def __call__(self, progress: FitProgress) -> bool | None:
        self.iterations.append(
            {"iteration": progress.iteration, "loss": progress.loss(), "seconds": round(progress.elapsed, 3)}
        )
        return self.then(progress) if self.then is not None else None

    def extra(self, settings: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"spark_params": settings}
        if self.iterations:
            out["training"] = {"iterations": self.iterations}
        return out


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


def _nothing_to_fit(home: Path, config: Config, as_of: datetime) -> RecforgeError:
    """Why the store's events as of ``as_of`` gave no pair to fit: the local build's errors."""
    stats = EventStore(home).stats()
    half_life = config.weighting.value().half_life_days
    if stats["events"] and stats["last"] and half_life is not None:
        return decayed_away(stats["last"], as_of, half_life)
    return RecforgeError(f"no events up to {iso(as_of)} in {home}; ingest some first (recforge ingest FILE)")
