"""Engines: where the work that grows with the data runs, behind one interface.

An :class:`Engine` does the steps whose cost grows with the events:

* :meth:`Engine.split`: the holdout split of the stored events into the weighted train
  and test :class:`~recforge.data.Interactions` (the pipeline's build);
* :meth:`Engine.fit_model`: fit a model on a build's train part (the pipeline's train);
* :meth:`Engine.recommend`: the served lists of some users (what evaluation scores);
* :meth:`Engine.lists`: a fitted model's precomputed lists, and their copy into Redis;
* :meth:`Engine.fit`: fit a model on all of a home's data (``recforge train``).

:class:`LocalEngine` does them on this machine (DuckDB, numba kernels, the blocked top-K of
:mod:`recforge.topk`); ``recforge.spark.SparkEngine`` on a Spark cluster, with the same results
(exactly for the lists of a given model, to float rounding for weights and ALS). Everything
around them (which model, its parameters, the gate, storing and publishing the version) is
written once, in :mod:`recforge.pipeline.stages` and :mod:`recforge.pipeline.versions`, and takes
the engine as an argument: the command line chooses it once (``--engine`` or ``[engine] name``,
:func:`recforge.cli.engines.open_engine`), nothing below asks which one it is.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recforge._time import iso
from recforge.catalog import Catalog, CatalogStore
from recforge.config import Config
from recforge.data.build import load_interactions
from recforge.data.interactions import Interactions
from recforge.data.schema import CONTENT_COLUMNS
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.lists import Lists, RedisLists
from recforge.models.base import FitProgress, Recommender
from recforge.pipeline.holdout import Holdout, split_events
from recforge.pipeline.training import make_model, model_params, training_catalog
from recforge.precompute import precompute

__all__ = ["Built", "ComputedLists", "Engine", "Fit", "FitCallback", "LocalEngine", "catalog_extra"]

#: What iterative models call after each iteration (see :class:`~recforge.models.base.FitProgress`)
FitCallback = Callable[[FitProgress], bool | None]


def catalog_extra(catalog: Catalog | None) -> dict[str, Any]:
    """What a version records of the catalog it was fitted with (nothing without one)."""
    if catalog is None:
        return {}
    return {"catalog": {"items": len(catalog), "fingerprint": catalog.fingerprint()}}


@dataclass
class Fit:
    """What :meth:`Engine.fit` returns: the fitted model, the interactions it was fitted on (for
    the popular list and the data window), and settings to record in the version's manifest."""

    model: Recommender
    interactions: Interactions
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Built:
    """What :meth:`Engine.split` returns: the train and test parts of a temporal holdout (the
    test part on the train part's vocabularies) and the split's report
    (:meth:`recforge.evaluation.splits.Split.summary`, with the ``cut``)."""

    train: Interactions
    test: Interactions
    summary: dict[str, Any]


class ComputedLists(ABC):
    """A model's precomputed lists as arrays (:attr:`lists`), and a way to copy them into a
    Redis list store that suits where they were computed."""

    lists: Lists

    @abstractmethod
    def copy_to(self, redis: RedisLists, version: str, model: Recommender) -> None:
        """Load the lists into ``redis`` as ``version`` (marked ready last)."""


class Engine(ABC):
    """Splits, fits and computes lists; see the module doc."""

    name: ClassVar[str]

    @abstractmethod
    def split(self, home: Path, holdout: Holdout, config: Config) -> Built:
        """The holdout split of the home's stored events up to now (never load-test or erased
        ones), weighted with ``[weighting]`` as of the end of the train part, as
        :func:`recforge.pipeline.holdout.split_events` defines it; the summary also says when the
        events were read (``read_at``)."""

    def model(self, name: str, params: dict[str, Any]) -> Recommender:
        """An unfitted model ``name`` of the parameters ``params`` (``[model.<name>]``, which may
        also hold this engine's own settings); a clear error for bad ones."""
        return make_model(name, params)

    @abstractmethod
    def fit_model(
        self,
        name: str,
        params: dict[str, Any],
        train: Interactions,
        callback: FitCallback | None = None,
        catalog: Catalog | None = None,
    ) -> Fit:
        """Fit the model :meth:`model` makes on ``train`` (a build's train part); the fitted
        model has ``train``'s vocabularies and seen pairs, the :class:`Fit`'s ``extra`` what the
        engine records about the fit. Iterative models call ``callback`` after each iteration
        (e.g. a :class:`~recforge._progress.FitReport`); with ``catalog``, every catalog item is
        listed and new arrivals get factors (``Recommender.fit``'s ``catalog``)."""

    @abstractmethod
    def recommend(self, model: Recommender, users: np.ndarray, k: int) -> np.ndarray:
        """The top-``k`` item indices (seen items filtered, padding ``-1``) of the dense user
        indices ``users``, row for row: ``model.recommend(users, k)``'s ids."""

    @abstractmethod
    def fit(self, home: Path, config: Config, model: str, callback: FitCallback | None = None) -> Fit:
        """Fit ``model`` (parameters from ``[model.<model>]``) on all of the home's data (with the
        home's catalog, when it has one)."""

    @abstractmethod
    def lists(
        self, model: Recommender, interactions: Interactions, config: Config
    ) -> contextlib.AbstractContextManager[ComputedLists]:
        """The lists of a fitted model, ``[pipeline]``'s sizes; temporary files live as long
        as the context."""


class _ArrayLists(ComputedLists):
    def __init__(self, lists: Lists) -> None:
        self.lists = lists

    def copy_to(self, redis: RedisLists, version: str, model: Recommender) -> None:
        redis.load(version, model.users_, model.items_, self.lists, force=True)


class LocalEngine(Engine):
    """This machine: DuckDB over the event store, the model's own ``fit`` and top-K."""

    name = "local"

    def split(self, home: Path, holdout: Holdout, config: Config) -> Built:
        store = EventStore(home)
        read_at = datetime.now(UTC)  # events stamped later (clock skew) wait for the next build
        events = store.scan(
            CONTENT_COLUMNS, end=read_at + timedelta(microseconds=1), skip_prefix=config.data.loadtest_prefix
        )
        if events.num_rows == 0:
            raise RecforgeError(
                f"no events to build from in {store.root} (load-test and erased ones are not)"
            )
        split = split_events(events, holdout, config)
        return Built(split.train, split.test, {**split.summary(), "read_at": iso(read_at)})

    def fit_model(
        self,
        name: str,
        params: dict[str, Any],
        train: Interactions,
        callback: FitCallback | None = None,
        catalog: Catalog | None = None,
    ) -> Fit:
        return Fit(
            self.model(name, params).fit(train, callback, catalog=catalog), train, catalog_extra(catalog)
        )

    def recommend(self, model: Recommender, users: np.ndarray, k: int) -> np.ndarray:
        ids, _ = model.recommend(users, k=k, filter_seen=True)
        return np.asarray(ids)

    def fit(self, home: Path, config: Config, model: str, callback: FitCallback | None = None) -> Fit:
        """The latest build (``recforge build``)."""
        estimator = self.model(model, model_params(config, model))
        data = load_interactions(home)
        catalog = training_catalog(home, config)
        return Fit(estimator.fit(data, callback, catalog=catalog), data, catalog_extra(catalog))

    @contextlib.contextmanager
    def lists(
        self, model: Recommender, interactions: Interactions, config: Config
    ) -> Iterator[ComputedLists]:
        settings = config.pipeline
        store = CatalogStore(config.home)
        eligibility = Catalog.load(config.home).eligibility(model.items_) if store.exists else None
        yield _ArrayLists(
            precompute(
                model,
                interactions,
                k_users=settings.k_users,
                k_items=settings.k_items,
                k_popular=settings.k_popular,
                eligibility=eligibility,
                category_lists=config.catalog.category_lists,
                k_category=config.catalog.k_category,
            )
        )
