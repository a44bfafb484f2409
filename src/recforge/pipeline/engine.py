"""Engines: where the work that grows with the data runs, behind one interface.

An :class:`Engine` fits a model on a home's events (:meth:`Engine.fit`) and computes a fitted
model's precomputed lists (:meth:`Engine.lists`). :class:`LocalEngine` does both on this machine
(numba kernels, the blocked top-K of :mod:`recforge.topk`); ``recforge.spark.SparkEngine`` on a
Spark cluster. Everything around them (which model, its parameters, storing the version,
publishing) is written once, in :mod:`recforge.pipeline.versions`, and takes the engine as an
argument: the command line chooses it once (:func:`recforge.cli.engines.open_engine`), nothing
below asks which one it is.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from recforge.catalog import Catalog, CatalogStore
from recforge.config import Config
from recforge.data.build import load_interactions
from recforge.data.interactions import Interactions
from recforge.lists import Lists, RedisLists
from recforge.models.base import FitProgress, Recommender
from recforge.pipeline.training import make_model, model_params, training_catalog
from recforge.precompute import precompute

__all__ = ["ComputedLists", "Engine", "Fit", "LocalEngine"]

FitCallback = Callable[[FitProgress], bool | None]


@dataclass
class Fit:
    """What :meth:`Engine.fit` returns: the fitted model, the interactions it was fitted on (for
    the popular list and the data window), and settings to record in the version's manifest."""

    model: Recommender
    interactions: Interactions
    extra: dict[str, Any] = field(default_factory=dict)


class ComputedLists(ABC):
    """A model's precomputed lists as arrays (:attr:`lists`), and a way to copy them into a
    Redis list store that suits where they were computed."""

    lists: Lists

    @abstractmethod
    def copy_to(self, redis: RedisLists, version: str, model: Recommender) -> None:
        """Load the lists into ``redis`` as ``version`` (marked ready last)."""


class Engine(ABC):
    """Fits models and computes their lists; see the module doc."""

    name: ClassVar[str]

    @abstractmethod
    def fit(self, home: Path, config: Config, model: str, callback: FitCallback | None = None) -> Fit:
        """Fit ``model`` (parameters from ``[model.<model>]``) on the home's data; iterative
        models call ``callback`` after each iteration (e.g. a :class:`~recforge._progress.FitReport`)."""

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
    """This machine: the latest build (``recforge build``) and the model's own top-K."""

    name = "local"

    def fit(self, home: Path, config: Config, model: str, callback: FitCallback | None = None) -> Fit:
        estimator = make_model(model, model_params(config, model))
        data = load_interactions(home)
        catalog = training_catalog(home, config)
        extra = (
            {}
            if catalog is None
            else {"catalog": {"items": len(catalog), "fingerprint": catalog.fingerprint()}}
        )
        return Fit(estimator.fit(data, callback, catalog=catalog), data, extra)

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
