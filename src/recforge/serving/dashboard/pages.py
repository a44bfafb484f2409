"""The data of each page, as plain dictionaries for the templates.

Every function reads what :class:`~recforge.serving.dashboard.state.Dashboard` keeps in memory,
a few small files (run records, manifests) or a few row groups of the digest: no page scans the
event store. Charts are rendered here (:mod:`.charts`), so templates only place them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from recforge.pipeline.state import STAGES, list_runs
from recforge.serving.answers import Query, explanations, item_answer, user_answer
from recforge.serving.dashboard.charts import PALETTE, bar_chart, line_chart, scatter_chart
from recforge.serving.dashboard.details import item_details
from recforge.serving.dashboard.state import Dashboard
from recforge.serving.model import ServedModel

__all__ = ["item_page", "models_page", "overview_page", "pipeline_page", "tuning_page", "user_page"]

_NONE = np.zeros(0, dtype=np.int32)
#: Users sampled for an item's "viewed together" counts (bounds the work on a popular item).
TOGETHER_USERS = 2000
#: Newest events listed on the Users page.
HISTORY_SHOWN = 50
#: Runs listed on the Pipeline page.
RUNS_SHOWN = 30
_STATUS_COLOUR = {"done": PALETTE[2], "failed": PALETTE[3], "interrupted": PALETTE[1], "running": PALETTE[0]}


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _when(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _item(dash: Dashboard, item_id: str) -> dict[str, Any]:
    """An item as pages show it: its id and, where the catalog has them, its details."""
    details = item_details(dash.catalog, item_id)
    return {"id": item_id, "details": details}


# overview ------------------------------------------------------------------------------------
def overview_page(dash: Dashboard) -> dict[str, Any]:
    hourly = dash.digest.hourly()
    x = hourly.hours.astype(np.float64) * 3600.0
    chart = line_chart(
        {name: (x, counts.astype(np.float64)) for name, counts in hourly.counts.items()},
        title="Events per hour by type",
        y_label="events / hour",
        empty="no events digested yet",
    )
    served = dash.served()
    try:
        published = dash.registry.current()
    except OSError:
        published = None
    window = dash.live.recent(60.0) if dash.live is not None else None
    latest = dash.live.latest() if dash.live is not None else None
    series = dash.live.series() if dash.live is not None else {}
    nothing = "no traffic sampled yet" if dash.live is not None else "not serving traffic here"
    traffic = [
        line_chart(
            {name: series[name]} if name in series else {},
            title=f"{name}, last hour",
            y_label=name,
            width=470,
            height=200,
            empty=nothing,
        )
        for name in ("requests/s", "p99 ms")
    ]
    kafka = dash.kafka.latest() if dash.kafka is not None else None
    manifest = served.manifest if served is not None else {}
    return {
        "events": hourly.events,
        "by_type": hourly.by_type,
        "first": _iso(hourly.first_us),
        "last": _iso(hourly.last_us),
        "users": manifest.get("n_users"),
        "items": manifest.get("n_items"),
        "served": served.version if served is not None else None,
        "served_model": manifest.get("model"),
        "loaded_at": datetime.fromtimestamp(served.loaded_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if served is not None
        else None,
        "published": published,
        "serving": dash.live is not None,
        "live_name": dash.live.name if dash.live is not None else None,
        "live_error": dash.live.error if dash.live is not None else None,
        "window": window,
        "fresh_users": latest.fresh_users if latest is not None else None,
        "kafka_configured": dash.kafka is not None,
        "kafka_lag": kafka.kafka_lag if kafka is not None else None,
        "kafka_error": dash.kafka.error if dash.kafka is not None else None,
        "digest_parts": len(dash.digest.parts),
        "digest_pending": dash.digest.pending,
        "digest_error": dash.digest.error,
        "refreshed": dash.refreshed,
        "events_chart": chart,
        "traffic_chart": traffic,
    }


# pipeline ------------------------------------------------------------------------------------
def pipeline_page(dash: Dashboard) -> dict[str, Any]:
    runs = list_runs(dash.home)
    shown: list[dict[str, Any]] = []
    for run in reversed(runs[-RUNS_SHOWN:]):
        state = run.state
        stages = state.get("stages", {})
        evaluation = (stages.get("evaluate") or {}).get("result") or {}
        gate = (stages.get("gate") or {}).get("result") or {}
        published = (stages.get("publish") or {}).get("result") or {}
        precomputed = (stages.get("precompute") or {}).get("result") or {}
        shown.append(
            {
                "id": run.id,
                "created": state.get("created"),
                "status": run.status,
                "outcome": state.get("outcome"),
                "error": state.get("error"),
                "version": published.get("version") or precomputed.get("version"),
                "stages": [
                    {
                        "name": name,
                        "status": (stages.get(name) or {}).get("status", "-"),
                        "seconds": (stages.get(name) or {}).get("seconds"),
                        "error": (stages.get(name) or {}).get("error"),
                    }
                    for name in STAGES
                ],
                "gate": gate,
                "metrics": evaluation.get("metrics") or {},
                "k": evaluation.get("k"),
            }
        )
    # NDCG / MAP of each published version when its run published it
    at, ndcg, map_ = [], [], []
    for run in runs:
        if run.state.get("outcome") != "published":
            continue
        stages = run.state.get("stages", {})
        metrics = (((stages.get("evaluate") or {}).get("result") or {}).get("metrics") or {}).get(
            "candidate"
        ) or {}
        when = _when((stages.get("publish") or {}).get("finished") or run.state.get("created"))
        if when is None or "ndcg" not in metrics:
            continue
        at.append(when)
        ndcg.append(metrics.get("ndcg", np.nan))
        map_.append(metrics.get("map", np.nan))
    quality = line_chart(
        {"NDCG@k": (np.array(at), np.array(ndcg)), "MAP@k": (np.array(at), np.array(map_))},
        title="NDCG and MAP of each published version, on its holdout",
        markers=True,
        empty="no version published by a pipeline run yet",
    )
    latest = shown[0] if shown else None
    durations = None
    if latest is not None:
        done = [s for s in latest["stages"] if s["seconds"] is not None]
        durations = bar_chart(
            [s["name"] for s in done],
            [float(s["seconds"]) for s in done],
            title=f"Stage seconds of run {latest['id']}",
            unit=" s",
            colours=[_STATUS_COLOUR.get(s["status"], PALETTE[7]) for s in done],
        )
    return {"runs": shown, "total": len(runs), "quality_chart": quality, "durations_chart": durations}


# models --------------------------------------------------------------------------------------
def models_page(dash: Dashboard) -> dict[str, Any]:
    current = dash.registry.current()
    served = dash.served()
    versions: list[dict[str, Any]] = []
    for info in reversed(dash.registry.list()):
        manifest = info.manifest
        metrics = manifest.get("metrics") or {}
        window = manifest.get("data_window") or {}
        versions.append(
            {
                "version": info.version,
                "status": info.status,
                "reason": info.reason,
                "created": info.created,
                "model": manifest.get("model"),
                "n_users": manifest.get("n_users"),
                "n_items": manifest.get("n_items"),
                "metrics": {k: v for k, v in sorted(metrics.items()) if isinstance(v, int | float)},
                "data_first": window.get("first"),
                "data_last": window.get("last"),
                "current": info.version == current,
                "served": served is not None and served.version == info.version,
            }
        )
    preferred = ("ndcg", "map", "precision", "recall", "hit_rate", "mrr", "coverage")
    names = {name for v in versions for name in v["metrics"]}
    ordered = sorted(
        names, key=lambda n: (preferred.index(n.split("@")[0]) if n.split("@")[0] in preferred else 99, n)
    )
    return {
        "versions": versions,
        "metric_names": ordered,
        "current": current,
        "served": served.version if served is not None else None,
        "admin": bool(dash.admin_keys),
    }


# users ---------------------------------------------------------------------------------------
def user_page(dash: Dashboard, user_id: str | None, k: int = 10, n_explain: int = 3) -> dict[str, Any]:
    if not user_id:
        return {"query": None}
    served = dash.served()
    weighting = dash.config.weighting.value().as_of(datetime.now(UTC))  # what a build now weighs
    found = dash.digest.user_events(user_id, limit=HISTORY_SHOWN)
    table = found.table
    history = []
    if table.num_rows:
        import pyarrow.compute as pc

        types = pc.dictionary_encode(table.column("event_type")).combine_chunks()
        stamps = table.column("timestamp").cast("int64").to_numpy()
        weights = weighting.strength(
            types.indices.to_numpy(zero_copy_only=False),
            types.dictionary.to_pylist(),
            table.column("value").to_numpy(),
            stamps,
        )
        for item, kind, value, stamp, weight in zip(
            table.column("item_id").to_pylist(),
            table.column("event_type").to_pylist(),
            table.column("value").to_pylist(),
            stamps.tolist(),
            weights.tolist(),
            strict=True,
        ):
            history.append(
                {
                    "item": _item(dash, item),
                    "type": kind,
                    "value": value,
                    "when": _iso(stamp),
                    "weight": weight,
                }
            )
    fresh = _fresh(dash, served, user_id)
    recommendations: list[dict[str, Any]] = []
    source = fallback = None
    known = None
    trained = None
    if served is not None:
        index = served.users.get(user_id)
        known = index >= 0
        if known:
            seen = served.model.seen_
            trained = int(seen.indptr[index + 1] - seen.indptr[index])
        state = served.catalog.state
        answer = user_answer(served, state, user_id, Query(k), fresh)
        source, fallback = answer.source, answer.fallback
        explained = explanations(served, user_id, answer, fresh, n_explain)
        names = state.names(answer.ids, served.items)
        for name, score, why in zip(names, answer.scores.tolist(), explained, strict=True):
            recommendations.append(
                {
                    "item": _item(dash, name),
                    "score": score,
                    "why": [
                        {
                            "item": _item(dash, str(c["item_id"])),
                            "share": c["share"],
                            "contribution": c["contribution"],
                        }
                        for c in why
                    ],
                }
            )
    return {
        "query": user_id,
        "history": history,
        "history_total": found.total,
        "reference": weighting.describe()["reference_time"],
        "half_life": weighting.half_life_days,
        "fresh": len(fresh),
        "served": served.version if served is not None else None,
        "explains": served is not None and served.model.explains,
        "known": known,
        "trained": trained,
        "source": source,
        "fallback": fallback,
        "recommendations": recommendations,
        "pending": dash.digest.pending,
    }


def _fresh(dash: Dashboard, served: ServedModel | None, user_id: str) -> list[Any]:
    if dash.fresh is None or served is None:
        return []
    try:
        return dash.fresh(user_id, served.cutoff_us)
    except Exception:  # a store down: the page shows recommendations without fresh events
        return []


# items ---------------------------------------------------------------------------------------
def item_page(dash: Dashboard, item_id: str | None, k: int = 10) -> dict[str, Any]:
    if not item_id:
        return {"query": None}
    served = dash.served()
    days = dash.digest.item_days(item_id)
    popularity = line_chart(
        {
            name: (days.days.astype(np.float64) * 86_400.0, c.astype(np.float64))
            for name, c in days.counts.items()
        },
        title=f"Events per day on {item_id}",
        y_label="events / day",
        empty="no events on this item",
    )
    similar: list[dict[str, Any]] = []
    together: list[dict[str, Any]] = []
    source = None
    users = sampled = 0
    known = None
    if served is not None:
        index = served.items.get(item_id)
        known = index >= 0
        state = served.catalog.state
        answer = item_answer(served, state, item_id, Query(k))
        source = answer.source
        for name, score in zip(state.names(answer.ids, served.items), answer.scores.tolist(), strict=True):
            similar.append({"item": _item(dash, name), "score": score})
        if known:
            counts, users, sampled = viewed_together(served, index, k)
            for name, count in zip(served.items.names(counts[0]), counts[1].tolist(), strict=True):
                together.append({"item": _item(dash, name), "users": int(count)})
    return {
        "query": item_id,
        "details": item_details(dash.catalog, item_id),
        "known": known,
        "served": served.version if served is not None else None,
        "source": source,
        "similar": similar,
        "together": together,
        "together_users": users,
        "together_sampled": sampled,
        "events": days.events,
        "popularity_chart": popularity,
        "pending": dash.digest.pending,
    }


def viewed_together(served: ServedModel, item: int, k: int) -> tuple[tuple[np.ndarray, np.ndarray], int, int]:
    """The ``k`` items most users of ``item`` also had in the model's training data, with those
    users' counts; from at most :data:`TOGETHER_USERS` of its users, evenly spaced. Returns
    ``((items, counts), users of the item, users counted)``."""
    seen = served.model.seen_
    positions = np.flatnonzero(np.asarray(seen.indices) == item)
    users = np.searchsorted(seen.indptr, positions, side="right") - 1
    if len(users) > TOGETHER_USERS:
        users = users[np.linspace(0, len(users) - 1, TOGETHER_USERS).astype(np.int64)]
    if not len(users):
        return (_NONE, _NONE), 0, 0
    starts, stops = seen.indptr[users], seen.indptr[users + 1]
    lengths = stops - starts
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    others = np.asarray(seen.indices)[offsets]
    counts = np.bincount(others, minlength=len(served.model.items_))
    counts[item] = 0
    top = np.argsort(-counts, kind="stable")[:k]
    top = top[counts[top] > 0]
    return (top.astype(np.int32), counts[top]), len(positions), len(users)


# tuning --------------------------------------------------------------------------------------
def tuning_page(dash: Dashboard) -> dict[str, Any]:
    studies = []
    for name in sorted(dash.studies):
        study = dash.studies[name]
        params = sorted({p for t in study.trials for p in t["params"]})
        charts = []
        numbers = [t["number"] for t in study.trials]
        values = np.array([np.nan if t["value"] is None else t["value"] for t in study.trials], dtype=float)
        highlight = numbers.index(study.best) if study.best is not None else None
        for param in params:
            raw = [t["params"].get(param) for t in study.trials]
            if not all(isinstance(v, int | float) or v is None for v in raw):
                continue
            x = np.array([np.nan if v is None else float(v) for v in raw])
            charts.append(
                scatter_chart(
                    x,
                    values,
                    title=f"{study.metric} against {param}",
                    x_label=param + (" (log)" if study.log_scale.get(param) else ""),
                    y_label=study.metric,
                    highlight=highlight,
                    x_log=bool(study.log_scale.get(param)),
                )
            )
        best = next((t for t in study.trials if t["number"] == study.best), None)
        studies.append(
            {
                "name": study.name,
                "model": study.model,
                "metric": study.metric,
                "k": study.k,
                "error": study.error,
                "trials": study.trials,
                "params": params,
                "counts": {
                    s: sum(t["state"] == s for t in study.trials) for s in ("complete", "pruned", "fail")
                },
                "best": best,
                "charts": charts,
            }
        )
    return {"studies": studies, "refreshed": dash.refreshed}
