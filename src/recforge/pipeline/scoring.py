"""Scoring a stored model version on a holdout through exactly what it serves.

:func:`evaluate_holdout` (``recforge evaluate``) scores, on a temporal holdout of the stored
events and beside the popularity baseline, either a stored version through the lists it serves
(its data must end before the cut, else it has seen the held-out events and the command says
so), or a model configuration fitted on the train part.

:func:`score_artifact` takes a version's precomputed lists (what serving looks up), for each
held-out user either the user's list or, for a user the version does not know, its popular
fallback list, maps the item ids through their external names onto the holdout's item
indices, and measures them against the holdout's relevant items. The version may have been
trained on other data with other vocabularies: nothing but the external ids has to agree.

:func:`score_published` is how the gate scores the published model on a candidate's holdout.
"Same holdout" means the candidate's test events, with the relevant sets of the candidate's
evaluator. That comparison is fair only if the published model has not seen those events:

* when the published version's training data ends before the holdout's cut (the normal case of
  a temporal holdout:
  the pipeline publishes models fitted on the train part, and new data moves the cut forward),
  the served artifact itself is scored (``method = "artifact"``): "is the candidate better
  than what users get now?", staleness included;
* otherwise (its data reaches past the cut: e.g. trained by ``recforge train`` on all events, or
  late events moved the cut back) its *configuration* (model and parameters) is refitted on the
  candidate's train part and scored (``method = "refit"``); when that configuration equals the
  candidate's, the candidate's own score is used (``method = "same-config"``). A per-user
  holdout has no cut: the published version is always judged this way;
* when neither is possible (its files are unreadable, its model type is no longer available,
  its parameters no longer fit the constructor), there is no score, the gate skips that check
  and the run records why: a broken published version must not block every later candidate.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from recforge._time import parse_time
from recforge.artifacts import Artifact, ModelRegistry
from recforge.config import Config
from recforge.data.interactions import Interactions
from recforge.data.schema import CONTENT_COLUMNS
from recforge.data.store import EventStore
from recforge.data.vocabulary import Vocabulary
from recforge.errors import RecforgeError
from recforge.evaluation.metrics import METRICS, metrics_at_k
from recforge.evaluation.protocol import DEFAULT_METRICS, Evaluator
from recforge.evaluation.ratings import RATING_METRICS, rating_errors
from recforge.evaluation.report import Evaluation, Report
from recforge.evaluation.splits import Split
from recforge.models.base import Recommender
from recforge.models.popular import Popular
from recforge.pipeline.engine import Engine, LocalEngine
from recforge.pipeline.holdout import Holdout, holdout_from_config, split_events
from recforge.pipeline.training import make_model, model_params

__all__ = ["PublishedScore", "evaluate_holdout", "score_artifact", "score_published", "served_lists"]


def served_lists(
    artifact: Artifact, user_ids: np.ndarray, k: int, items: Vocabulary | None = None
) -> np.ndarray:
    """The first ``k`` served items (padding ``-1``) for external user ids: the user's
    precomputed list, or the popular fallback for a user the version lacks. Item indices are
    the artifact's, or, given ``items``, that vocabulary's (``-1`` for items it lacks)."""
    if artifact.user_ids.shape[1] < k:
        raise RecforgeError(
            f"version {artifact.version} holds {artifact.user_ids.shape[1]} items per user, fewer than k={k}"
        )
    rows = artifact.model.users_.lookup(user_ids)
    known = rows >= 0
    fallback = np.full(k, -1, dtype=np.int32)
    popular = np.asarray(artifact.popular_ids[:k], dtype=np.int32)
    fallback[: len(popular)] = popular
    out = np.broadcast_to(fallback, (len(rows), k)).copy()
    out[known] = np.asarray(artifact.user_ids[rows[known], :k], dtype=np.int32)
    if items is None:
        return out
    to_items = items.lookup(artifact.model.items_.array)  # artifact item index -> items index
    return np.where(out >= 0, to_items[np.maximum(out, 0)], -1).astype(np.int32)


def score_artifact(artifact: Artifact, evaluator: Evaluator, name: str | None = None) -> Evaluation:
    """The version's served lists scored on the evaluator's holdout (see the module doc)."""
    test = evaluator.test
    if not isinstance(test, Interactions):
        raise TypeError("scoring a stored version needs the holdout as Interactions (for its ids)")
    k = evaluator.k
    start = time.perf_counter()
    users = np.asarray(test.users.ids(evaluator.users))
    mapped = served_lists(artifact, users, k, items=test.items)
    listed = time.perf_counter()
    means = metrics_at_k(mapped, evaluator.relevant, k, evaluator.metrics)
    done = time.perf_counter()
    known = int(np.count_nonzero(artifact.model.users_.lookup(users) >= 0))
    return Evaluation(
        name=name or artifact.manifest.get("model", artifact.version),
        k=k,
        metrics={key: float(value) for key, value in means.items()},
        users=len(evaluator.users),
        relevant=int(evaluator.relevant.nnz),
        relevant_seen_in_train=evaluator.relevant_seen_in_train,
        recommend_seconds=listed - start,
        metric_seconds=done - listed,
        info={"version": artifact.version, "users_known_to_version": known},
    )


class PublishedScore:
    """How the published model scored on a holdout: ``evaluation`` (or ``None``), ``method``
    (``artifact``, ``refit``, ``same-config`` or ``none``), and a ``note``."""

    def __init__(self, version: str, evaluation: Evaluation | None, method: str, note: str) -> None:
        self.version = version
        self.evaluation = evaluation
        self.method = method
        self.note = note

    def to_dict(self) -> dict[str, Any]:
        metrics = self.evaluation.metrics if self.evaluation is not None else None
        return {"version": self.version, "method": self.method, "note": self.note, "metrics": metrics}


def score_published(
    registry: ModelRegistry,
    evaluator: Evaluator,
    train: Interactions,
    cut: datetime | None,
    *,
    candidate: tuple[str, dict[str, Any], str, Evaluation],
    name: str = "published",
    engine: Engine | None = None,
) -> PublishedScore | None:
    """Score the published version on the candidate's holdout (see the module doc); ``None``
    when nothing is published. ``candidate`` is ``(model name, constructor parameters as its
    saved ``model.json`` records them, config hash, its evaluation)``, for the
    same-configuration shortcut. A published version that cannot be read or refitted gets no
    score (``method = "none"``) and a note saying why, so that it never blocks the pipeline. A
    refit and its lists run on ``engine`` (default: this machine)."""
    engine = LocalEngine() if engine is None else engine
    version = registry.current()
    if version is None:
        return None
    try:
        info = registry.get(version)
        manifest = info.manifest
        last = (manifest.get("data_window") or {}).get("last")
        if cut is not None and last and parse_time(last) < cut:
            evaluation = score_artifact(registry.open(version), evaluator, name)
            return PublishedScore(
                version, evaluation, "artifact", f"served lists of {version}, trained before the cut"
            )
        saved = json.loads((registry.versions_dir / version / "model" / "model.json").read_text())
        model_name, params = str(saved["model"]), dict(saved["params"])
        if cut is None:
            why = f"a per-user holdout has no cut to tell which held-out events {version} saw"
        else:
            why = f"{version} was trained on events up to {last}, past the cut {_iso(cut)}"
        cand_name, cand_params, cand_hash, cand_eval = candidate
        if (model_name, params, manifest.get("config_hash")) == (cand_name, cand_params, cand_hash):
            same = dataclasses.replace(cand_eval, name=name, info={"version": version})
            return PublishedScore(
                version, same, "same-config", f"{why}; its configuration is the candidate's"
            )
        model: Recommender = engine.fit_model(model_name, params, train).model
    except (OSError, KeyError, ValueError, TypeError, RecforgeError) as error:
        message = " ".join(str(error).split())
        return PublishedScore(version, None, "none", f"{version} could not be scored: {message}")
    evaluation = evaluator.evaluate(model, name, lists=engine.recommend)
    return PublishedScore(
        version, evaluation, "refit", f"{why}; its configuration was refitted on this train part"
    )


def evaluate_holdout(
    home: str | Path,
    config: Config,
    *,
    version: str | None = None,
    models: Sequence[str] = (),
    holdout: Holdout | None = None,
    k: int | None = None,
    metrics: Sequence[str] | None = None,
) -> Report:
    """A report of the popularity baseline and the subjects on a temporal holdout of the stored
    events: the version ``version``, or each configuration in ``models`` refitted on the same
    train part; with neither, the published version, else ``[model] name``.

    The holdout defaults to the version's own cut (what the pipeline measured it on, with any
    events since added to the held-out side), else ``[pipeline]``'s holdout. ``metrics``: the
    ranking metrics (default :data:`~recforge.evaluation.protocol.DEFAULT_METRICS`) and the
    rating errors ``rmse``, ``mae`` (:mod:`~recforge.evaluation.ratings`), for rating data.
    """
    if version and models:
        raise RecforgeError("give --version or --model, not both")
    ranking, rating = _metric_names(metrics)
    registry = ModelRegistry(home)
    if not version and not models:
        version = registry.current()
        models = () if version else (config.model.name,)
    info = registry.get(version) if version else None
    window = (info.manifest.get("data_window") or {}) if info else {}
    if holdout is None:
        holdout = Holdout(at=parse_time(window["cut"])) if window.get("cut") else holdout_from_config(config)
    if holdout.per_user is not None and info is not None:
        raise RecforgeError(
            f"a per-user holdout cannot tell which held-out events version {info.version} saw; evaluate "
            f"its configuration with --model {info.manifest.get('model')}, or give a temporal --holdout"
        )
    events = EventStore(home).scan(CONTENT_COLUMNS, skip_prefix=config.data.loadtest_prefix)
    split = split_events(events, holdout, config)
    k = config.pipeline.k if k is None else k
    evaluator = Evaluator(split.train, split.test, k, metrics=ranking)
    evaluations = [
        _with_errors(evaluator.evaluate(Popular().fit(split.train), "popular"), None, split, rating)
    ]
    cut = split.params.get("cut")
    if info is not None:
        last = window.get("last")
        if not last or not cut or parse_time(last) >= parse_time(cut):
            raise RecforgeError(
                f"version {info.version} was trained on events up to {last}, at or after the holdout cut "
                f"{cut}: it has seen the held-out events. Evaluate it on a later holdout (--holdout), or "
                f"its configuration with --model {info.manifest.get('model')}"
            )
        artifact = registry.open(info.version)
        scored = score_artifact(artifact, evaluator, f"{info.manifest.get('model')} {info.version}")
        evaluations.append(_with_errors(scored, artifact.model, split, rating))
    for name in models:
        fitted = make_model(name, model_params(config, name)).fit(split.train)
        label = name if name != "popular" else "popular (model)"
        evaluations.append(_with_errors(evaluator.evaluate(fitted, label), fitted, split, rating))
    evaluated = info.version if info else "models " + ", ".join(models)
    return Report(tuple(evaluations), baseline="popular", split={**split.summary(), "evaluated": evaluated})


def _metric_names(metrics: Sequence[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ranking and the rating metrics among ``metrics`` (a clear error for others)."""
    if metrics is None:
        return DEFAULT_METRICS, ()
    unknown = [m for m in metrics if m not in METRICS and m not in RATING_METRICS]
    if unknown:
        known = ", ".join([*METRICS, *RATING_METRICS])
        raise RecforgeError(f"unknown metric {unknown[0]!r}; metrics: {known}")
    ranking = tuple(m for m in metrics if m in METRICS)
    return ranking or ("ndcg",), tuple(m for m in metrics if m in RATING_METRICS)


def _with_errors(
    evaluation: Evaluation, model: Recommender | None, split: Split, rating: Sequence[str]
) -> Evaluation:
    """``evaluation`` with the rating errors ``rating`` of ``model`` on the held-out ratings."""
    if not rating:
        return evaluation
    errors = (
        rating_errors(model, split.test)
        if model is not None
        else {"rmse": float("nan"), "mae": float("nan"), "pairs": 0.0}
    )
    return dataclasses.replace(
        evaluation,
        metrics={**evaluation.metrics, **{m: errors[m] for m in rating}},
        info={**evaluation.info, "rated_pairs": int(errors["pairs"])},
    )


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")
