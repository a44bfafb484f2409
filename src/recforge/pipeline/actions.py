"""The one-off commands beside the pipeline: train a version by hand, evaluate a version or a
model configuration on a holdout, recompute a version's lists.

* :func:`train_version` (``recforge train``) fits a model on the latest build
  (``<home>/interactions``, from ``recforge build``: *all* stored events) and stores it as a
  candidate version with its lists. It has seen every event, so no held-out score can be
  measured for it; publish it by hand (``recforge models publish``) or let
  ``recforge pipeline run`` train, gate and publish.
* :func:`evaluate_holdout` (``recforge evaluate``) scores, on a temporal holdout of the stored
  events and beside the popularity baseline, either a stored version through the lists it
  serves (:func:`~recforge.pipeline.scoring.score_artifact`; its data must end before the cut,
  else it has seen the held-out events and the command says so), or a model configuration
  fitted on the train part (``recommend`` with seen items filtered: the call that produces
  served lists).
* :func:`precompute_version` (``recforge precompute``) recomputes a version's lists (other
  sizes, a faster top-K) from its saved model into a new candidate version.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from recforge._time import parse_time
from recforge.artifacts import ModelRegistry, VersionInfo
from recforge.config import Config
from recforge.data.build import load_interactions
from recforge.data.interactions import Interactions
from recforge.data.schema import CONTENT_COLUMNS
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.evaluation.protocol import Evaluator
from recforge.evaluation.report import Report
from recforge.models.base import Recommender
from recforge.models.popular import Popular
from recforge.pipeline.holdout import Holdout, holdout_from_config, split_events
from recforge.pipeline.scoring import score_artifact
from recforge.pipeline.training import make_model, model_params
from recforge.precompute import precompute

__all__ = ["evaluate_holdout", "precompute_version", "train_version"]


def train_version(home: str | Path, config: Config, model: str | None = None) -> tuple[VersionInfo, float]:
    """Fit ``model`` (default ``[model] name``) on ``<home>/interactions`` and store it as a
    candidate version; returns the version and the fit's seconds."""

    name = model or config.model.name
    params = model_params(config, name)
    estimator = make_model(name, params)
    data = load_interactions(home)
    started = time.perf_counter()
    estimator.fit(data)
    seconds = time.perf_counter() - started
    info = _store(ModelRegistry(home), estimator, data, config, extra={"source": "recforge train"})
    return info, seconds


def _store(
    registry: ModelRegistry,
    model: Recommender,
    data: Interactions,
    config: Config,
    *,
    extra: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    data_window: dict[str, Any] | None = None,
) -> VersionInfo:
    settings = config.pipeline
    lists = precompute(
        model, data, k_users=settings.k_users, k_items=settings.k_items, k_popular=settings.k_popular
    )
    window = data_window or {
        key: data.info.get(key) for key in ("first", "last", "events", "window_start", "window_end")
    }
    return registry.create(
        model,
        user_lists=lists.users,
        item_lists=lists.items,
        popular=lists.popular,
        metrics=metrics or {},
        data_window=window,
        config_hash=config.output_hash(),
        item_source=lists.item_source,
        extra=extra,
    )


def evaluate_holdout(
    home: str | Path,
    config: Config,
    *,
    version: str | None = None,
    model: str | None = None,
    holdout: Holdout | None = None,
    k: int | None = None,
) -> Report:
    """A report of the popularity baseline and one subject on a temporal holdout of the stored
    events: the version ``version``, or the configuration ``model`` refitted on the train part;
    with neither, the published version, else ``[model] name``.

    The holdout defaults to the version's own cut (what the pipeline measured it on, with any
    events since added to the held-out side), else ``[pipeline]``'s holdout.
    """
    if version and model:
        raise RecforgeError("give --version or --model, not both")
    registry = ModelRegistry(home)
    if not version and not model:
        version = registry.current()
        model = None if version else config.model.name
    info = registry.get(version) if version else None
    window = (info.manifest.get("data_window") or {}) if info else {}
    if holdout is None:
        holdout = Holdout(at=parse_time(window["cut"])) if window.get("cut") else holdout_from_config(config)
    split = split_events(EventStore(home).scan(CONTENT_COLUMNS), holdout, config)
    k = config.pipeline.k if k is None else k
    evaluator = Evaluator(split.train, split.test, k)
    popular = evaluator.evaluate(Popular().fit(split.train), "popular")
    cut = split.params["cut"]
    if info is not None:
        last = window.get("last")
        if not last or parse_time(last) >= parse_time(cut):
            raise RecforgeError(
                f"version {info.version} was trained on events up to {last}, at or after the holdout cut "
                f"{cut}: it has seen the held-out events. Evaluate it on a later holdout (--holdout), or "
                f"its configuration with --model {info.manifest.get('model')}"
            )
        subject = score_artifact(
            registry.open(info.version), evaluator, f"{info.manifest.get('model')} {info.version}"
        )
    else:
        assert model is not None
        fitted = make_model(model, model_params(config, model)).fit(split.train)
        subject = evaluator.evaluate(fitted, model if model != "popular" else "popular (model)")
    described = {**split.summary(), "evaluated": info.version if info else f"model {model}"}
    return Report((popular, subject), baseline="popular", split=described)


def precompute_version(
    home: str | Path,
    config: Config,
    version: str | None = None,
) -> VersionInfo:
    """Recompute the lists of ``version`` (default: the published one) with ``[pipeline]``'s
    sizes into a new candidate version, from its saved model and the interactions it was
    fitted on (its pipeline build, or ``<home>/interactions``), which must still exist."""
    registry = ModelRegistry(home)
    version = version or registry.current()
    if version is None:
        raise RecforgeError("nothing is published; name a version with --version")
    info = registry.get(version)
    model = Recommender.load(registry.versions_dir / version / "model", mmap=False)
    data = _fitted_on(Path(home), info, model)
    extra = {k: v for k, v in (info.manifest.get("extra") or {}).items() if k != "train_key"}
    new = _store(
        registry,
        model,
        data,
        config,
        extra={**extra, "precomputed_from": version},
        metrics=info.metrics,
        data_window=info.manifest.get("data_window"),
    )
    if info.status == "rejected":
        registry.reject(new.version, info.reason)
        new = registry.get(new.version)
    return new


def _fitted_on(home: Path, info: VersionInfo, model: Recommender) -> Interactions:
    extra = info.manifest.get("extra") or {}
    candidates = []
    if extra.get("build"):
        path = home / "pipeline" / "builds" / str(extra["build"]) / "train"
        if path.exists():
            candidates.append(Interactions.load(path))
    if (home / "interactions").exists():
        candidates.append(load_interactions(home))
    for data in candidates:
        if data.users == model.users_ and data.items == model.items_ and data.nnz == model.seen_.nnz:
            return data
    raise RecforgeError(
        f"the interactions version {info.version} was fitted on are gone (rebuilt or pruned); "
        "train a new version"
    )
