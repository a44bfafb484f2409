"""The pipeline's stages: plain functions of a :class:`Context` and a :class:`~.state.Run`.

Each stage reads what earlier stages of the run recorded, writes its outputs atomically, and
returns a JSON-ready result that the runner records in the run's state. Each is idempotent:
outputs are keyed by the content they derive from, so a rerun with the same inputs finds them
and does not redo the work (and a crash half-way leaves nothing half-written to trip over).

Layout under the home::

    inbox/                      event files to ingest (configurable: [pipeline] inbox)
    inbox/done/<run-id>/        files ingested by that run
    inbox/failed/               unreadable files, each with a <name>.error beside it
    pipeline/builds/<fp>/       a build: train/ and test/ Interactions and split.json, named by
                                the fingerprint of the events, weighting and holdout
    pipeline/models/<key>/      a fitted candidate, named by its train key (build + model +
                                parameters + settings), until it becomes a model version
    runs/<run-id>/state.json    the run's record; evaluation.json its report

The stages:

``ingest``
    Every file in the inbox (names starting with ``.`` or ending in ``.part``/``.tmp`` are being
    written and are skipped) goes through :func:`~recforge.data.ingest.ingest_file` and then
    moves to ``done/``; an unreadable file moves to ``failed/`` with the error, so one bad file
    never blocks the loop. A file ingested but not yet moved when a run dies is ingested again
    by the next run: every event is then a duplicate, dropped by its event id.
``build``
    The holdout split (:mod:`~recforge.pipeline.holdout`: temporal, or per user) of the stored
    events up to now (never load-test or erased ones), weighted as of the end of its train part;
    reused when the events' content (the set of event keys, so compaction changes nothing), the
    deletions, the weighting and the holdout are unchanged.
``tune``
    Every ``[pipeline] tune_every`` runs, tunes on the build's train part and records the
    choice (:mod:`~recforge.pipeline.tune_stage`); otherwise skips.

The stages that grow with the data (build, train, evaluate's lists, precompute) run on the
run's engine (:mod:`~recforge.pipeline.engine`: this machine, or a Spark cluster), given to the
:class:`Context` by whoever starts the run; the others are bookkeeping on this machine.
``train``
    Fits the model (``[model] name``, parameters from ``[model.<name>]``; the tuned choice
    instead while ``tune_every`` is positive and one exists) on the build's train part. When a
    model version with the same train key exists, nothing is fitted: the run *reuses* that
    version and the later stages only finish what an interrupted run left undone (publishing an
    accepted candidate); no new version appears while data and settings are unchanged.
``evaluate``
    The candidate, the popularity baseline (fitted on the same train part) and the published
    model (see :mod:`~recforge.pipeline.scoring`) on the build's holdout, at ``k``; the report
    goes to ``runs/<run-id>/evaluation.json``.
``gate``
    :func:`~recforge.pipeline.gate.decide` on NDCG@k.
``precompute``
    The candidate's lists and a new model version holding them, its metrics, data window and
    gate decision (:func:`~recforge.pipeline.versions.store_version`); a rejected candidate
    gets status ``rejected`` with the reason, and is kept (for inspection, or a manual
    ``recforge models publish``), never served. When ``serving.store`` is a Redis list store,
    an accepted candidate's lists are copied there too, from where the engine computed them
    (Spark: from the executors), so servers find them loaded when it is published.
``publish``
    An accepted candidate becomes the published version (atomic ``CURRENT``).
``prune``
    Keeps the newest ``keep_versions`` versions (never the published one), ``keep_runs`` run
    records, and the builds and fitted candidates still needed.

**What is published is trained on the train part only.** The version that serves is the very
model the gate measured: its metrics are its own, not those of a sibling fitted on other data,
and its training data ends before the holdout cut, so the next run can score it on its (later)
holdout without it having seen those events. The cost is freshness: the newest holdout window
(``holdout_fraction`` of the events, or ``holdout_days``) is not in the factors; serving's
fold-in of fresh events covers it, and a short holdout keeps it small.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from recforge._files import commit_dir, temporary_dir, write_json_atomic
from recforge._progress import Display, fit_report
from recforge._time import parse_time
from recforge.artifacts import ModelRegistry, VersionInfo
from recforge.config import Config
from recforge.data.ingest import ingest_file
from recforge.data.interactions import Interactions
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.evaluation.protocol import Evaluator
from recforge.evaluation.report import Evaluation, Report
from recforge.lists import is_redis_url
from recforge.models.base import Recommender
from recforge.pipeline.engine import Engine, LocalEngine
from recforge.pipeline.gate import GateDecision, decide
from recforge.pipeline.holdout import holdout_from_config
from recforge.pipeline.scoring import score_published
from recforge.pipeline.state import Run, list_runs
from recforge.pipeline.training import train_key, training_catalog
from recforge.pipeline.tune_stage import model_choice, tune_build
from recforge.pipeline.versions import store_version

__all__ = [
    "STAGE_FUNCTIONS",
    "Context",
    "build",
    "evaluate",
    "events_fingerprint",
    "find_version",
    "gate",
    "ingest",
    "precompute",
    "prune",
    "publish",
    "train",
    "tune",
]

log = logging.getLogger("recforge.pipeline")
#: the train stage's line per iteration (when not on a terminal)
fit_log = logging.getLogger("recforge.pipeline.fit")

BUILD_FORMAT = 1
_SKIP_SUFFIXES = (".part", ".tmp")


@dataclass
class Context:
    """What every stage gets: the home, the settings, an optional model override, and the
    engine the stages that grow with the data run on."""

    home: Path
    config: Config
    #: Fit this model instead of ``[model] name``.
    model: str | None = None
    #: How fits show their progress (:func:`recforge._progress.fit_report`): a bar on a
    #: terminal, log lines otherwise; ``"quiet"``: nothing.
    display: Display = "auto"
    #: Where the build, the fit, evaluation's lists and the precomputed lists are computed.
    engine: Engine = field(default_factory=LocalEngine)
    registry: ModelRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        self.registry = ModelRegistry(self.home)

    @property
    def inbox(self) -> Path:
        configured = self.config.pipeline.inbox
        return Path(configured) if configured else self.home / "inbox"

    @property
    def builds(self) -> Path:
        return self.home / "pipeline" / "builds"

    @property
    def staged_models(self) -> Path:
        return self.home / "pipeline" / "models"


# ingest -----------------------------------------------------------------------------------------
def ingest(ctx: Context, run: Run) -> dict[str, Any]:
    inbox = ctx.inbox
    inbox.mkdir(parents=True, exist_ok=True)
    pending = sorted(
        p
        for p in inbox.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(_SKIP_SUFFIXES)
    )
    store = EventStore(ctx.home)
    files, failed = [], []
    for path in pending:
        try:
            report = ingest_file(path, store, ctx.config, show_progress=False)
        except (RecforgeError, ValueError, pa.ArrowException) as error:  # the file's fault: set aside
            target = _move(path, inbox / "failed")
            target.with_name(target.name + ".error").write_text(f"{error}\n")
            failed.append({"file": path.name, "error": str(error), "moved_to": str(target)})
            log.warning("ingest: %s is unreadable, moved to %s: %s", path.name, target.parent, error)
            continue
        _move(path, inbox / "done" / run.path.name)
        files.append({**report.to_dict(), "source": path.name})
        log.info(
            "ingest: %s: %s accepted, %s rejected, %s duplicate",
            path.name,
            f"{report.accepted:,}",
            f"{report.rejected:,}",
            f"{report.duplicates:,}",
        )
    totals = {key: sum(int(f[key]) for f in files) for key in ("accepted", "rejected", "duplicates")}
    if not pending:
        log.info("ingest: no new files in %s", inbox)
    return {"inbox": str(inbox), "files": files, "failed": failed, **totals}


def _move(path: Path, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / path.name
    n = 1
    while target.exists():
        target = directory / f"{path.name}.{n}"
        n += 1
    os.replace(path, target)
    return target


# build ------------------------------------------------------------------------------------------
def events_fingerprint(store: EventStore) -> dict[str, Any]:
    """The number of stored events and an order-free hash of their keys: equal for the same set
    of events however they are split into segments (compaction changes nothing)."""
    count, hi_sum, lo_sum, hi_xor = 0, np.uint64(0), np.uint64(0), np.uint64(0)
    with np.errstate(over="ignore"):
        for segment in store.segments():
            keys = store.keys(segment)
            count += len(keys.hi)
            hi_sum += np.add.reduce(keys.hi, dtype=np.uint64)
            lo_sum += np.add.reduce(keys.lo, dtype=np.uint64)
            hi_xor ^= np.bitwise_xor.reduce(keys.hi) if len(keys.hi) else np.uint64(0)
    return {"events": count, "keys": f"{int(hi_sum):016x}{int(lo_sum):016x}{int(hi_xor):016x}"}


def build(ctx: Context, run: Run) -> dict[str, Any]:
    store = EventStore(ctx.home)
    holdout = holdout_from_config(ctx.config)
    content = events_fingerprint(store)
    if content["events"] == 0:
        raise RecforgeError(f"no events in {store.root}; drop event files into {ctx.inbox} first")
    weighting = dataclasses.asdict(ctx.config.weighting)
    prefix = ctx.config.data.loadtest_prefix
    blob = json.dumps(
        {
            "format": BUILD_FORMAT,
            "events": content,
            "erased": store.tombstones.fingerprint(),
            "loadtest_prefix": prefix,
            "weighting": weighting,
            "holdout": holdout.describe(),
        },
        sort_keys=True,
    )
    fingerprint = hashlib.sha256(blob.encode()).hexdigest()[:20]
    final = ctx.builds / fingerprint
    if (final / "split.json").exists():
        summary = json.loads((final / "split.json").read_text())
        log.info("build: unchanged events and settings, reusing build %s", fingerprint)
        return {**summary, "fingerprint": fingerprint, "path": str(final), "reused": True}
    started = time.perf_counter()
    split = ctx.engine.split(ctx.home, holdout, ctx.config)
    summary = {
        "split": _jsonable(split.summary),
        "holdout": holdout.describe(),
        "cut": split.summary.get("cut"),  # none for a per-user holdout
        "read_at": split.summary.get("read_at"),
        "events": content["events"],
        "train": _part(split.train),
        "test": _part(split.test),
    }
    tmp = temporary_dir(final)
    split.train.save(tmp / "train")
    split.test.save(tmp / "test")
    write_json_atomic(tmp / "split.json", summary)
    commit_dir(tmp, final)
    log.info(
        "build: %s events, cut %s: train %s users x %s items (%s pairs), %s held-out pairs (%.1f s)",
        f"{content['events']:,}",
        summary["cut"],
        f"{split.train.n_users:,}",
        f"{split.train.n_items:,}",
        f"{split.train.nnz:,}",
        f"{split.test.nnz:,}",
        time.perf_counter() - started,
    )
    return {**summary, "fingerprint": fingerprint, "path": str(final), "reused": False}


def _part(x: Interactions) -> dict[str, Any]:
    return {
        "users": x.n_users,
        "items": x.n_items,
        "pairs": x.nnz,
        "events": int(x.info.get("events", 0)) - int(x.info.get("dropped", 0)),
        "first": x.info.get("first"),
        "last": x.info.get("last"),
    }


def _load_build(result: dict[str, Any], part: str) -> Interactions:
    path = Path(result["path"]) / part
    if not path.exists():
        raise RecforgeError(f"the build {result['fingerprint']} is gone (pruned?); run the build stage again")
    return Interactions.load(path)


# tune -------------------------------------------------------------------------------------------
def tune(ctx: Context, run: Run) -> dict[str, Any]:
    built = run.result("build")
    return tune_build(ctx.home, ctx.config, run, _load_build(built, "train"), built["fingerprint"])


# train ------------------------------------------------------------------------------------------
def find_version(registry: ModelRegistry, key: str) -> VersionInfo | None:
    """The newest model version made from the train key ``key``, if any."""
    matches = [v for v in registry.list() if (v.manifest.get("extra") or {}).get("train_key") == key]
    return matches[-1] if matches else None


def train(ctx: Context, run: Run) -> dict[str, Any]:
    built = run.result("build")
    name, params, source = model_choice(ctx.home, ctx.config, ctx.model)
    ctx.engine.model(name, params)  # fail early on an unknown model or bad parameters
    catalog = training_catalog(ctx.home, ctx.config)
    data_key = built["fingerprint"] + ("" if catalog is None else f"+catalog:{catalog.fingerprint()}")
    key = train_key(data_key, name, params, ctx.config)
    base = {"model": name, "params": params, "train_key": key, "source": source}
    existing = find_version(ctx.registry, key)
    if existing is not None:
        log.info(
            "train: %s on these data and settings is version %s (%s)", name, existing.version, existing.status
        )
        return {**base, "reused": existing.version, "status": existing.status}
    staged = ctx.staged_models / key
    if (staged / "model.json").exists():
        log.info("train: %s was already fitted on this build (%s)", name, staged)
        return {**base, "model_dir": str(staged), "fit_seconds": None}
    data = _load_build(built, "train")
    started = time.perf_counter()
    with fit_report(f"train: {name}", ctx.display, emit=fit_log.info) as report:
        fit = ctx.engine.fit_model(name, params, data, report, catalog=catalog)
    seconds = time.perf_counter() - started
    tmp = temporary_dir(staged)
    fit.model.save(tmp)
    commit_dir(tmp, staged)
    log.info("train: fitted %s on %s pairs in %.1f s", name, f"{data.nnz:,}", seconds)
    training = {"iterations": report.history} if report.history else None
    return {
        **base,
        "model_dir": str(staged),
        "fit_seconds": round(seconds, 3),
        "training": training,
        **fit.extra,
    }


def _staged_model(trained: dict[str, Any]) -> Recommender:
    path = Path(trained["model_dir"])
    if not (path / "model.json").exists():
        raise RecforgeError(f"the fitted candidate {path} is gone; run the train stage again")
    return Recommender.load(path, mmap=False)


# evaluate ---------------------------------------------------------------------------------------
def evaluate(ctx: Context, run: Run) -> dict[str, Any]:
    trained = run.result("train")
    k = ctx.config.pipeline.k
    if "reused" in trained:
        info = ctx.registry.get(trained["reused"])
        extra = info.manifest.get("extra") or {}
        log.info("evaluate: reusing the evaluation of version %s", info.version)
        return {"reused": info.version, **(extra.get("evaluation") or {})}
    built = run.result("build")
    model = _staged_model(trained)
    # a model fitted with the catalog lists its items too: the holdout is widened to them
    data = _load_build(built, "train").with_items(model.items_)
    test = _load_build(built, "test").with_items(model.items_)
    evaluator = Evaluator(data, test, k)
    lists = ctx.engine.recommend
    candidate = evaluator.evaluate(model, "candidate", lists=lists)
    if model.name == "popular":  # the candidate is the baseline
        popular = dataclasses.replace(candidate, name="popular")
    else:
        popular = evaluator.evaluate(ctx.engine.fit_model("popular", {}, data).model, "popular", lists=lists)
    cut = parse_time(built["cut"]) if built.get("cut") else None
    candidate_params = json.loads((Path(trained["model_dir"]) / "model.json").read_text())["params"]
    published = score_published(
        ctx.registry,
        evaluator,
        data,
        cut,
        candidate=(model.name, candidate_params, ctx.config.output_hash(), candidate),
        engine=ctx.engine,
    )
    evaluations: list[Evaluation] = [popular, candidate]
    if published is not None and published.evaluation is not None:
        evaluations.append(published.evaluation)
    report = Report(tuple(evaluations), baseline="popular", split=built["split"])
    report.write_json(run.path / "evaluation.json")
    for warning in report.warnings:
        log.warning("evaluate: %s", warning)
    metrics = {e.name: _clean(e.metrics) for e in evaluations}
    published_result = None
    if published is not None:
        published_result = {**published.to_dict(), "metrics": metrics.get("published")}
    log.info(
        "evaluate: NDCG@%d candidate %s, popular %s%s (%s users)",
        k,
        _fmt(candidate.metrics.get("ndcg")),
        _fmt(popular.metrics.get("ndcg")),
        ""
        if published is None
        else f", published {_fmt(_metric(published_result, 'ndcg'))} ({published.method})",
        f"{candidate.users:,}",
    )
    return {
        "k": k,
        "users": candidate.users,
        "metrics": metrics,
        "published": published_result,
        "report": str(run.path / "evaluation.json"),
        "warnings": report.warnings,
    }


# gate -------------------------------------------------------------------------------------------
def gate(ctx: Context, run: Run) -> dict[str, Any]:
    trained, evaluated = run.result("train"), run.result("evaluate")
    if "reused" in trained:
        info = ctx.registry.get(trained["reused"])
        recorded = (info.manifest.get("extra") or {}).get("gate")
        if recorded is None:
            raise RecforgeError(f"version {info.version} has no recorded gate decision")
        return {**recorded, "reused": info.version}
    k = int(evaluated["k"])
    metrics = evaluated["metrics"]
    decision = decide(
        _nan(metrics["candidate"].get("ndcg")),
        _nan(metrics["popular"].get("ndcg")),
        _metric(evaluated["published"], "ndcg"),
        tolerance=ctx.config.pipeline.gate_tolerance,
        metric=f"ndcg@{k}",
        candidate_is_popular=trained["model"] == "popular",
    )
    log.info("gate: %s: %s", "accepted" if decision.accepted else "rejected", decision.reason)
    return decision.to_dict()


# precompute -------------------------------------------------------------------------------------
def precompute(ctx: Context, run: Run) -> dict[str, Any]:
    trained, verdict = run.result("train"), GateDecision.from_dict(run.result("gate"))
    if "reused" in trained:
        return {"version": trained["reused"], "reused": True}
    existing = find_version(ctx.registry, trained["train_key"])
    if existing is not None:  # created by this stage before the run died
        return {"version": existing.version, "status": existing.status}
    built, evaluated = run.result("build"), run.result("evaluate")
    settings = ctx.config.pipeline
    model = _staged_model(trained)
    data = _load_build(built, "train")
    started = time.perf_counter()
    k = int(evaluated["k"])
    metrics = {f"{name}@{k}": value for name, value in evaluated["metrics"]["candidate"].items()}
    info = store_version(
        ctx.engine,
        ctx.registry,
        model,
        data,
        ctx.config,
        metrics=metrics,
        data_window={
            **built["train"],
            "cut": built["cut"],
            "holdout": built["holdout"],
            "read_at": built.get("read_at"),
        },
        extra={
            "run_id": run.id,
            "train_key": trained["train_key"],
            "build": built["fingerprint"],
            "evaluation": {key: evaluated[key] for key in ("k", "users", "metrics", "published")},
            "gate": verdict.to_dict(),
            **({"training": trained["training"]} if trained.get("training") else {}),
        },
        store=ctx.config.serving.store
        if verdict.accepted and is_redis_url(ctx.config.serving.store)
        else None,
    )
    seconds = time.perf_counter() - started
    if not verdict.accepted:
        ctx.registry.reject(info.version, verdict.reason)
    log.info(
        "precompute: version %s (%s users x %d, %s items x %d) in %.1f s%s",
        info.version,
        f"{data.n_users:,}",
        settings.k_users,
        f"{data.n_items:,}",
        settings.k_items,
        seconds,
        "" if verdict.accepted else ", rejected",
    )
    return {"version": info.version, "status": "candidate" if verdict.accepted else "rejected"}


# publish ----------------------------------------------------------------------------------------
def publish(ctx: Context, run: Run) -> dict[str, Any]:
    trained, verdict = run.result("train"), GateDecision.from_dict(run.result("gate"))
    version = run.result("precompute")["version"]
    info = ctx.registry.get(version)
    reused = "reused" in trained
    if verdict.accepted and info.status == "candidate":
        previous = ctx.registry.current()
        ctx.registry.publish(version)
        log.info("publish: %s is now served (was %s)", version, previous or "nothing")
        return {"outcome": "published", "version": version, "previous": previous}
    if reused or info.status != "rejected":
        log.info("publish: nothing new: version %s is %s", version, info.status)
        return {"outcome": "unchanged", "version": version, "status": info.status}
    log.info("publish: version %s rejected: %s", version, info.reason)
    return {"outcome": "rejected", "version": version, "reason": info.reason}


# prune ------------------------------------------------------------------------------------------
def prune(ctx: Context, run: Run) -> dict[str, Any]:
    settings = ctx.config.pipeline
    for key in ("keep_versions", "keep_runs"):
        if getattr(settings, key) < 1:
            raise RecforgeError(f"[pipeline] {key} must be at least 1, got {getattr(settings, key)}")
    deleted = ctx.registry.prune(settings.keep_versions) if ctx.registry.versions_dir.exists() else []
    versioned = {(v.manifest.get("extra") or {}).get("train_key") for v in ctx.registry.list()}
    unversioned = [p.name for p in _by_age(ctx.staged_models) if p.name not in versioned]
    staged = _prune_dirs(ctx.staged_models, keep=set(unversioned[-2:]))
    current_build = (run.stage("build") or {}).get("result", {}).get("fingerprint")
    recent_builds = [p.name for p in _by_age(ctx.builds)][-2:]
    builds = _prune_dirs(ctx.builds, keep={current_build, *recent_builds})
    runs = [r for r in list_runs(ctx.home) if r.path != run.path]
    doomed = runs[: max(0, len(runs) - (settings.keep_runs - 1))]
    for old in doomed:
        old.delete()
    log.info(
        "prune: %d versions, %d fitted candidates, %d builds, %d run records deleted",
        len(deleted),
        len(staged),
        len(builds),
        len(doomed),
    )
    return {"versions": deleted, "staged_models": staged, "builds": builds, "runs": [r.id for r in doomed]}


def _by_age(root: Path) -> list[Path]:
    """The complete entries (not hidden leftovers) under ``root``, oldest first."""
    if not root.exists():
        return []
    return sorted((p for p in root.iterdir() if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime)


def _prune_dirs(root: Path, keep: set[str | None]) -> list[str]:
    """Delete every directory under ``root`` not named in ``keep``, and the leftovers of
    interrupted writes (``.tmp-*``). Returns the deleted names."""
    if not root.exists():
        return []
    deleted = []
    for path in root.iterdir():
        if path.is_dir() and path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
            deleted.append(path.name)
    return sorted(deleted)


# helpers ----------------------------------------------------------------------------------------
STAGE_FUNCTIONS: dict[str, Callable[[Context, Run], dict[str, Any]]] = {
    "ingest": ingest,
    "build": build,
    "tune": tune,
    "train": train,
    "evaluate": evaluate,
    "gate": gate,
    "precompute": precompute,
    "publish": publish,
    "prune": prune,
}


def _clean(metrics: dict[str, float]) -> dict[str, float | None]:
    return {key: (float(v) if v is not None and math.isfinite(v) else None) for key, v in metrics.items()}


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _metric(published: dict[str, Any] | None, name: str) -> float | None:
    if not published or not published.get("metrics"):
        return None
    value = published["metrics"].get(name)
    return None if value is None else float(value)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
