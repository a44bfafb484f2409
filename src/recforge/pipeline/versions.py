"""Storing model versions: the one path from a fitted model to a candidate version.

* :func:`store_version` computes a fitted model's lists with an engine and writes the version
  (model, lists, metrics, data window, config hash) into the registry; with a Redis ``store``
  the lists go there too. The pipeline's precompute stage and the commands below all use it.
* :func:`train_version` (``recforge train``) fits a model with an engine on all stored data
  (``recforge build``'s latest build, or the event store for Spark) and stores it. It has seen
  every event, so no held-out score can be measured for it; publish it by hand (``recforge
  models publish``) or let ``recforge pipeline run`` train, gate and publish.
* :func:`precompute_version` (``recforge precompute``) recomputes a version's lists (other sizes,
  another engine) from its saved model into a new candidate version. The model carries what it
  was fitted on (``seen_``: the pairs and their ``r``), which is all the lists need.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from recforge._progress import Display, fit_report
from recforge.artifacts import ModelRegistry, VersionInfo
from recforge.config import Config
from recforge.data.interactions import Interactions
from recforge.errors import RecforgeError
from recforge.lists import RedisLists
from recforge.models.base import Recommender
from recforge.pipeline.engine import Engine

__all__ = ["precompute_version", "store_version", "train_version"]


def store_version(
    engine: Engine,
    registry: ModelRegistry,
    model: Recommender,
    interactions: Interactions,
    config: Config,
    *,
    extra: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    data_window: dict[str, Any] | None = None,
    store: str | None = None,
) -> VersionInfo:
    """A new candidate version of ``model`` (fitted on ``interactions``) with its lists, computed
    by ``engine`` with ``[pipeline]``'s sizes; ``data_window`` defaults to what the interactions
    record. With ``store`` (a ``redis://`` URL) the lists are loaded into that list store too."""
    keys = ("first", "last", "events", "window_start", "window_end", "as_of", "read_at")
    window = data_window or {key: interactions.info.get(key) for key in keys}
    with engine.lists(model, interactions, config) as computed:
        info = registry.create(
            model,
            computed.lists,
            metrics=metrics or {},
            data_window=window,
            config_hash=config.output_hash(),
            extra={**extra, "engine": engine.name},
        )
        if store is not None:
            serving = config.serving
            redis = RedisLists(store, serving.redis_prefix, serving.redis_keep_versions)
            computed.copy_to(redis, info.version, model)
    return info


def train_version(
    engine: Engine,
    home: str | Path,
    config: Config,
    model: str | None = None,
    store: str | None = None,
    display: Display = "auto",
    metrics: dict[str, Any] | None = None,
) -> tuple[VersionInfo, float]:
    """Fit ``model`` (default ``[model] name``) with ``engine`` and store it as a candidate
    version; returns the version and the fit's seconds. Iterative models show their progress
    (``display``, see :func:`recforge._progress.fit_report`) and the version records the loss
    after each iteration (``extra.training``). ``metrics`` are recorded with it (those of its
    configuration on a holdout, when one was measured)."""
    name = model or config.model.name
    started = time.perf_counter()
    with fit_report(f"fitting {name}", display) as report:
        fit = engine.fit(Path(home), config, name, report)
    seconds = time.perf_counter() - started
    if report.history:
        fit.extra["training"] = {"iterations": report.history}
    source = "recforge train" if engine.name == "local" else f"recforge train --engine {engine.name}"
    info = store_version(
        engine,
        ModelRegistry(home),
        fit.model,
        fit.interactions,
        config,
        extra={"source": source, **fit.extra},
        metrics=metrics,
        store=store,
    )
    return info, seconds


def precompute_version(
    engine: Engine,
    home: str | Path,
    config: Config,
    version: str | None = None,
    store: str | None = None,
) -> VersionInfo:
    """Recompute the lists of ``version`` (default: the published one) with ``[pipeline]``'s
    sizes into a new candidate version, keeping its metrics, data window and status."""
    registry = ModelRegistry(home)
    version = version or registry.current()
    if version is None:
        raise RecforgeError("nothing is published; name a version with --version")
    info = registry.get(version)
    model = Recommender.load(registry.versions_dir / version / "model", mmap=False)
    fitted_on = Interactions(model.seen_, model.users_, model.items_, info={})
    extra = {k: v for k, v in (info.manifest.get("extra") or {}).items() if k not in ("train_key", "engine")}
    new = store_version(
        engine,
        registry,
        model,
        fitted_on,
        config,
        extra={**extra, "precomputed_from": version},
        metrics=info.metrics,
        data_window=info.manifest.get("data_window"),
        store=store,
    )
    if info.status == "rejected":
        registry.reject(new.version, info.reason)
        new = registry.get(new.version)
    return new
