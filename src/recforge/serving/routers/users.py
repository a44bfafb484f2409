"""``GET /v1/users/{user_id}/recommendations``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from recforge.data.tombstones import Tombstone
from recforge.lists import StoreUnavailable
from recforge.serving import answers
from recforge.serving.answers import Answer, explanations, render, user_answer, warn_store
from recforge.serving.deps import Serving, serving_of
from recforge.serving.fresh import FreshEvent
from recforge.serving.live_catalog import CatalogState
from recforge.serving.model import ServedModel
from recforge.serving.routers.params import (
    EXPLAIN_PARAMETER,
    LIST_PARAMETERS,
    check_id,
    explain_of,
    list_query,
)
from recforge.serving.schemas import Recommendations, errors

router = APIRouter(prefix="/v1/users", tags=["recommendations"])


@router.get(
    "/{user_id:id}/recommendations",
    response_model=None,
    responses={200: {"model": Recommendations}, **errors(401, 403, 404, 422, 503)},
    openapi_extra={"parameters": [*LIST_PARAMETERS, EXPLAIN_PARAMETER]},
    summary="Top-k items for a user",
)
async def recommendations(
    request: Request,
    user_id: Annotated[str, Path(description="External user id (at most data.max_id_length characters).")],
) -> Response:
    """Precomputed for known users, folded in for users with events newer than the model,
    time-decayed popular items for everyone else; only available items, of the given
    categories, at most ``[catalog] max_cold_share`` of them new arrivals (``"cold": true``).
    (An API key is needed when ``serving.auth_reads`` is on.)

    A precomputed or popular answer is a few microseconds of lookups, and the exact scoring of a
    category for a known user a tenth of a millisecond: both are answered on the event loop; a
    fold-in (CPU-bound), an explanation and any Redis lookup (network I/O) run in the thread
    pool.
    """
    serving = serving_of(request)
    serving.authorize_read(request)
    check_id(user_id, "user_id", serving.config)
    served = serving.served(user_id)
    query, wanted = list_query(request, served, serving.config)
    explain = explain_of(request)
    erased = serving.erasures.of(user_id)
    if serving.blocking_reads:
        return await run_in_threadpool(_recommend, serving, served, user_id, query, wanted, erased, explain)
    events = fresh_events(serving, served, user_id, erased)
    if events or explain:  # a fold-in or an explanation (solves and scorings): off the event loop
        return await run_in_threadpool(
            _answer, serving, served, user_id, query, wanted, events, erased, explain
        )
    # a list lookup, or an exact scoring of a category for a known vector (~0.1 ms): inline
    return _answer(serving, served, user_id, query, wanted, events, erased)


def _recommend(
    serving: Serving,
    served: ServedModel,
    user_id: str,
    query: answers.Query,
    fields: tuple[str, ...],
    erased: tuple[Tombstone, ...],
    explain: int,
) -> Response:
    events = fresh_events(serving, served, user_id, erased)
    return _answer(serving, served, user_id, query, fields, events, erased, explain)


def fresh_events(
    serving: Serving, served: ServedModel, user_id: str, erased: tuple[Tombstone, ...]
) -> list[FreshEvent]:
    """The user's events newer than the model and not covered by ``erased`` (the user's
    tombstones; none when the fresh-event store is down)."""
    try:
        events = serving.fresh.get(user_id, served.cutoff_us)
    except StoreUnavailable as error:  # answer without fresh events rather than not at all
        warn_store(error)
        return []
    return serving.erasures.keep(events, erased)


def _answer(
    serving: Serving,
    served: ServedModel,
    user_id: str,
    query: answers.Query,
    fields: tuple[str, ...],
    events: list[FreshEvent],
    erased: tuple[Tombstone, ...],
    explain: int = 0,
) -> Response:
    state = served.catalog.state
    answer = counted_answer(serving, served, state, user_id, query, events, erased)
    explained = explanations(served, user_id, answer, events, explain) if explain else None
    body = render("user_id", user_id, served, state, answer, fields, explained)
    return Response(body, media_type="application/json")


def counted_answer(
    serving: Serving,
    served: ServedModel,
    state: CatalogState,
    user_id: str,
    query: answers.Query,
    events: list[FreshEvent],
    erased: tuple[Tombstone, ...],
) -> Answer:
    """One user's answer (:func:`~recforge.serving.answers.user_answer`), counted in the metrics;
    a user who erased events the version learned from (``erased``: their tombstones, read once
    per request) is answered as an unknown one."""
    metrics = serving.metrics
    started = time.perf_counter()
    forget = bool(erased) and serving.erasures.forgets(served, erased)
    answer = user_answer(served, state, user_id, query, events, forget=forget)
    if answer.source == "foldin":
        metrics.foldins.inc()
        metrics.foldin_latency.observe(time.perf_counter() - started)
    elif answer.fallback is not None:
        metrics.fallbacks.labels(answer.fallback).inc()
    metrics.recommendations.labels("users", answer.source).inc()
    return answer
