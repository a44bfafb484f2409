"""Configuration: every key, its default and its meaning, in one place.

Settings come from, in increasing priority: the defaults below, a TOML file
(``recforge.example.toml`` in the package lists every key with its default, and a test keeps
the two in step), and environment variables ``RECFORGE_<SECTION>__<KEY>`` (for example
``RECFORGE_WEIGHTING__HALF_LIFE_DAYS=7``). Short aliases exist because they are set most:
``RECFORGE_HOME`` for ``home``, ``RECFORGE_API_KEYS`` (comma-separated) for
``serving.api_keys`` and ``RECFORGE_ADMIN_KEYS`` for ``serving.admin_keys``.

Model hyperparameters live under ``[model.<name>]`` and are passed verbatim to that model's
constructor, so a tuned configuration is just another config file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recforge._time import parse_time
from recforge.data.schema import DEFAULT_EVENT_TYPES, MAX_ID_LENGTH
from recforge.weighting import DEFAULT_HALF_LIFE_DAYS, DEFAULT_WEIGHTS, Weighting

__all__ = [
    "CatalogConfig",
    "Config",
    "DataConfig",
    "EngineConfig",
    "ExperimentsConfig",
    "KafkaConfig",
    "ModelConfig",
    "PipelineConfig",
    "ServingConfig",
    "WeightingConfig",
    "load_config",
]

ENV_PREFIX = "RECFORGE_"


@dataclass
class DataConfig:
    """How raw events are read and validated."""

    #: Known event types. Others are rejected (``unknown_event_type = "reject"``) or kept.
    event_types: list[str] = field(default_factory=lambda: list(DEFAULT_EVENT_TYPES))
    #: ``"reject"``: an unknown event type is a bad row (the strict policy); ``"keep"``: load it.
    unknown_event_type: str = "reject"
    #: Event types whose ``value`` may be negative (e.g. a "dislike" with value -1).
    allow_negative: list[str] = field(default_factory=list)
    #: Longest user or item id accepted, in characters.
    max_id_length: int = MAX_ID_LENGTH
    #: Rows read per chunk: bounds memory while reading large files.
    chunk_rows: int = 1_000_000
    #: ``recforge events compact`` merges adjacent event-store segments smaller than this
    #: many rows into segments of up to this many rows.
    compact_rows: int = 4_000_000
    #: Events stamped more than this many seconds after the moment they are validated are
    #: rejected (clock skew is allowed for; one event from the future is not).
    max_future_seconds: float = 300.0
    #: Events stamped before this time (ISO 8601, UTC when no zone; not before 1970) are rejected.
    min_timestamp: str = "1970-01-01T00:00:00Z"
    #: Largest accepted magnitude of an event's ``value`` (sums stay finite in float32).
    max_value: float = 1e6
    #: Events whose ``event_id`` starts with this prefix are load-test traffic (``recforge
    #: loadtest`` marks its events so): stored like any other, but left out of every build.
    #: Empty: no event is.
    loadtest_prefix: str = "loadtest-"


@dataclass
class WeightingConfig:
    """How events become ``r_ui`` (see :mod:`recforge.weighting`)."""

    #: Weight per event type; a type not listed weighs 1.0.
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    #: Half-life of an event's contribution in days; 0 turns time decay off.
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS
    #: Reference time for ages (ISO 8601); empty means the newest event in the data.
    reference_time: str = ""

    def value(self) -> Weighting:
        """The :class:`~recforge.weighting.Weighting` these settings stand for. The file's
        spellings are translated here and nowhere else: ``half_life_days = 0`` is no decay
        (``None``), an empty ``reference_time`` the default reference (the newest event)."""
        return Weighting(
            weights=self.weights,
            half_life_days=self.half_life_days or None,
            reference_time=parse_time(self.reference_time) if self.reference_time else None,
        )

    @classmethod
    def from_value(cls, weighting: Weighting) -> WeightingConfig:
        """The settings that stand for ``weighting`` (the inverse of :meth:`value`)."""
        return cls(
            weights=dict(weighting.weights),
            half_life_days=weighting.half_life_days or 0.0,
            reference_time=weighting.describe()["reference_time"] or "",
        )


@dataclass
class ModelConfig:
    """Which model ``recforge train`` fits, and its hyperparameters per model name."""

    #: ``als``, ``ease``, ``itemknn``, ``bpr`` or ``popular``.
    name: str = "als"
    #: Constructor arguments per model name, e.g. ``[model.als] factors = 64``.
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ServingConfig:
    """How ``recforge serve`` answers (see :mod:`recforge.serving`)."""

    #: Address and port ``recforge serve`` listens on.
    host: str = "127.0.0.1"
    port: int = 8000
    #: API processes (uvicorn workers). With more than one, use a Redis ``store`` so that
    #: fresh events posted to one process are seen by all.
    workers: int = 1
    #: API keys accepted as ``Authorization: Bearer <key>`` (required to post events). Env
    #: ``RECFORGE_API_KEYS`` (comma-separated) sets them without a file. Never logged.
    api_keys: list[str] = field(default_factory=list)
    #: Admin keys, separate from the write keys above: needed to erase a user's events
    #: (``DELETE /v1/users/{user_id}/events``) and for the dashboard's publish and rollback
    #: (``Authorization: Bearer <key>``). Env ``RECFORGE_ADMIN_KEYS`` (comma-separated) sets
    #: them without a file. Never logged.
    admin_keys: list[str] = field(default_factory=list)
    #: Require an API key for the read endpoints (recommendations, similar items, model) too.
    auth_reads: bool = False
    #: Where precomputed lists and fresh events live: ``"mmap"`` (the artifact's memory-mapped
    #: arrays, fresh events in process memory) or a ``redis://host:port/db`` URL (shared by
    #: several API processes).
    store: str = "mmap"
    #: Prefix of every Redis key recforge writes.
    redis_prefix: str = "recforge"
    #: Model versions whose lists are kept in Redis (older ones are deleted on load).
    redis_keep_versions: int = 3
    #: ``k`` when a request gives none, and the most a request gets (larger ``k`` is capped).
    k_default: int = 10
    k_max: int = 200
    #: Most item ids in one ``exclude`` parameter.
    max_exclude: int = 1000
    #: Fresh events kept per user (the newest), for fold-in recommendations.
    fresh_events_per_user: int = 100
    #: Users with fresh events kept in memory (least recently updated dropped first).
    fresh_max_users: int = 100_000
    #: Seconds a user's fresh events live in Redis after the last one (Redis store only).
    fresh_ttl_seconds: int = 604_800
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = 16_777_216
    #: Most events in one ``POST /v1/events``.
    max_events_per_request: int = 10_000
    #: Most users in one ``POST /v1/recommendations``.
    max_batch_users: int = 100
    #: Most events written as one event-store segment by the group commit.
    commit_max_events: int = 200_000
    #: How often the server checks for a newly published model version, in seconds.
    reload_poll_seconds: float = 1.0
    #: Serve the web dashboard under ``/ui`` beside the API (see :mod:`recforge.serving.dashboard`).
    dashboard: bool = True
    #: FastAPI's own OpenTelemetry spans and metrics for every request, sent to the global
    #: providers (``opentelemetry-instrument`` or the SDK set them up). Off by default: merely
    #: checking for providers costs ~25 us of CPU per request, a sixth of a precomputed answer;
    #: the Prometheus metrics at ``/metrics`` are there either way.
    opentelemetry: bool = False


@dataclass
class KafkaConfig:
    """How ``recforge ingest kafka`` consumes a topic (see :mod:`recforge.data.kafka`)."""

    #: Messages per batch at most. Each batch becomes one event-store segment, and its offsets
    #: are committed once that segment is durable.
    batch_events: int = 50_000
    #: A batch is stored after at most this many seconds, even when smaller.
    max_batch_wait_s: float = 2.0
    #: Consumer-group session timeout: how soon the partitions of a consumer that died go to
    #: another member (Kafka's default is 45 000; a lower value means a quicker take-over).
    session_timeout_ms: int = 10_000
    #: Seconds to wait for a broker to answer at start; then ``recforge ingest kafka`` gives up
    #: with one error (exit 2).
    connect_timeout_s: float = 30.0
    #: Serve Prometheus metrics (consumer lag, counts) over HTTP on this port; 0 turns it off.
    metrics_port: int = 0
    #: Address the metrics server listens on.
    metrics_host: str = "127.0.0.1"


@dataclass
class CatalogConfig:
    """Items and their use: cold start, filters, category lists (see :mod:`recforge.catalog`)."""

    #: When the home has a catalog, fit factor models with it: every catalog item gets a
    #: factor vector, items without events one mapped from their attributes (cold start).
    cold_start: bool = True
    #: Most items without events ("cold") in one answer, as a share of k (rounded down; at
    #: least 1 when positive); more come only after every eligible item with events. 1 lifts
    #: the cap, 0 keeps cold items last.
    max_cold_share: float = 0.3
    #: ``recforge train`` precomputes each user's list within this many of the largest
    #: categories (0: none); other categories are answered by exact scoring.
    category_lists: int = 0
    #: Items per user in each precomputed category list.
    k_category: int = 50
    #: How often each serving process reads catalog changes made elsewhere, in seconds.
    poll_seconds: float = 0.25
    #: Most items in one ``POST /v1/items``.
    max_items_per_request: int = 10_000


@dataclass
class PipelineConfig:
    """The retraining pipeline: holdout, quality gate, list sizes, retention, schedule, lock
    (see :mod:`recforge.pipeline`)."""

    #: Directory watched for event files to ingest; empty means ``<home>/inbox``.
    inbox: str = ""
    #: Temporal holdout: the newest this fraction of events is held out for evaluation.
    holdout_fraction: float = 0.1
    #: When positive, hold out the events of the last this many days instead of a fraction.
    holdout_days: float = 0.0
    #: When positive, hold out this fraction of each user's events at random instead of a time
    #: cut (a per-user holdout, seed 0: for data without a meaningful order in time, such as
    #: ratings).
    holdout_per_user: float = 0.0
    #: Metrics are computed @k; the gate compares NDCG@k.
    k: int = 10
    #: A candidate is published only when its NDCG@k is at least ``(1 - gate_tolerance)`` times
    #: the published model's on the same holdout (and above popularity's).
    gate_tolerance: float = 0.05
    #: Model versions kept by the prune stage (the published one is never deleted).
    keep_versions: int = 5
    #: Run records (``<home>/runs/<run-id>``) kept by the prune stage.
    keep_runs: int = 100
    #: Precomputed list sizes: items per user, similar items per item, popular fallback items.
    k_users: int = 100
    k_items: int = 50
    k_popular: int = 200
    #: Interval of ``recforge pipeline schedule`` when ``--every`` is not given (s, m, h, d).
    schedule_every: str = "10m"
    #: The lock that keeps runs from overlapping; empty means ``<home>/pipeline/pipeline.lock``.
    lock_path: str = ""
    #: Run the tune stage every this many pipeline runs (0: never); while a tuned choice exists,
    #: the train stage fits it instead of ``[model]``.
    tune_every: int = 0
    #: The model the tune stage tunes: a model name, or ``auto`` (the best of every family).
    tune_model: str = "auto"
    #: The time the tune stage (and ``recforge tune``, unless given ``--trials`` or
    #: ``--timeout``) spends searching (s, m, h, d).
    tune_budget: str = "5m"


@dataclass
class ExperimentsConfig:
    """Impressions, online metrics and A/B experiments (see :mod:`recforge.online`)."""

    #: Record every answer of the recommendation and similar-items routes as an impression
    #: (``<home>/impressions``); answers carry a ``recommendation_id`` either way.
    impressions: bool = True
    #: Impressions are written to the home in batches at least this often, in milliseconds: a
    #: server killed at any moment loses at most its last ``flush_ms`` of impressions ...
    flush_ms: int = 200
    #: ... and fsync'd at least this often: a machine that loses power loses at most its last
    #: ``sync_ms + flush_ms`` of impressions.
    sync_ms: int = 1000
    #: An event without a ``recommendation_id`` on an item shown to the same user at most this
    #: many hours before is attributed to the latest such impression.
    attribution_hours: float = 24.0
    #: Event types that count as a conversion.
    conversion_types: list[str] = field(default_factory=lambda: ["purchase"])
    #: What decides an experiment: the share of users who ``"convert"`` or who ``"click"`` (any
    #: event on a shown item).
    metric: str = "convert"
    #: A winner is declared when the two-sided p-value is below this ...
    alpha: float = 0.01
    #: ... and each arm has shown recommendations to at least this many users.
    min_users: int = 200
    #: How often a server recomputes the online metrics it exports to Prometheus, in seconds
    #: (0 turns it off) ...
    metrics_refresh_seconds: float = 60.0
    #: ... over the impressions of this many hours.
    metrics_window_hours: float = 24.0


@dataclass
class EngineConfig:
    """Where the stages that grow with the data run (see :mod:`recforge.pipeline.engine`);
    ``--engine``, ``--master`` and ``--driver-memory`` override these."""

    #: ``local`` (this machine) or ``spark`` (a Spark cluster; ``pip install 'recforge[spark]'``
    #: and Java 17), for ``pipeline run | schedule | <stage>``, ``train`` and ``precompute``.
    name: str = "local"
    #: Spark master URL: ``local[N]`` (N cores of this machine), or ``spark://host:port`` for a
    #: standalone cluster.
    master: str = "local[2]"
    #: Memory of the Spark driver (the JVM beside the process that runs the stages).
    driver_memory: str = "4g"
    #: Memory of each Spark executor on a cluster (``spark.executor.memory``).
    executor_memory: str = "1g"
    #: Spark's own messages below this level are not shown: ``ERROR`` hides its start-up
    #: warnings, which are noise for a user; ``WARN`` or ``INFO`` to look inside Spark.
    log_level: str = "ERROR"


@dataclass
class Config:
    """All of recforge's settings."""

    #: Where the event store, quarantine, models and studies live.
    home: str = "./recforge_data"
    data: DataConfig = field(default_factory=DataConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    experiments: ExperimentsConfig = field(default_factory=ExperimentsConfig)

    def output_hash(self) -> str:
        """A short hash of the settings that change what a trained model outputs.

        Stored in every artifact, so precomputed lists made under other settings are detected.
        """
        relevant = {
            "weighting": dataclasses.asdict(self.weighting),
            "model": dataclasses.asdict(self.model),
            "catalog": {
                key: getattr(self.catalog, key) for key in ("cold_start", "category_lists", "k_category")
            },
        }
        blob = json.dumps(relevant, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults, then the TOML file at ``path`` (if given), then ``RECFORGE_*`` variables,
    then ``overrides`` (a nested mapping, e.g. from command-line flags).

    Unknown sections or keys raise ``ValueError`` naming them: a typo is never silently ignored.
    """
    config = Config()
    if path is not None:
        path = Path(path)
        try:
            with path.open("rb") as handle:
                document = tomllib.load(handle)
        except FileNotFoundError:
            raise ValueError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"config file {path} is not valid TOML: {error}") from None
        _apply(config, document, where=str(path))
    _apply(config, _from_environment(os.environ if environ is None else environ), where="environment")
    if overrides:
        _apply(config, overrides, where="overrides")
    return config


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key == "home":
            nested["home"] = raw
        elif key in ("api_keys", "admin_keys"):
            nested.setdefault("serving", {})[key] = raw
        elif "__" in key:
            section, _, leaf = key.partition("__")
            nested.setdefault(section, {})[leaf] = raw
    return nested


def _apply(target: Any, values: Mapping[str, Any], where: str, prefix: str = "") -> None:
    fields = {f.name: f for f in dataclasses.fields(target)}
    hints = typing.get_type_hints(type(target))
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            if isinstance(target, ModelConfig) and isinstance(value, Mapping):
                # [model.<name>]: constructor arguments of that model, kept verbatim.
                target.params.setdefault(key, {}).update(_plain(value))
                continue
            raise ValueError(f"unknown setting {dotted!r} in {where}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ValueError(f"setting {dotted!r} in {where} must be a table")
            _apply(current, value, where, prefix=f"{dotted}.")
            continue
        setattr(target, key, _coerce(value, hints[key], dotted, where, current))


def _coerce(value: Any, hint: Any, dotted: str, where: str, current: Any) -> Any:
    origin = typing.get_origin(hint) or hint
    try:
        if origin is dict and isinstance(value, str):
            value = json.loads(value)
        if origin is list and isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if origin is bool and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return lowered in ("1", "true", "yes")
        if origin is dict:
            if not isinstance(value, Mapping):
                raise ValueError(value)
            return {str(k): _plain(v) for k, v in value.items()}
        if origin is list:
            if not isinstance(value, list):
                raise ValueError(value)
            return list(value)
        if origin in (int, float, str):
            if origin is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            if origin is not str and isinstance(value, bool):
                raise ValueError(value)
            return origin(value)
    except (TypeError, ValueError, json.JSONDecodeError):
        expected = getattr(origin, "__name__", str(origin))
        raise ValueError(f"setting {dotted!r} in {where} must be {expected}, got {value!r}") from None
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
