"""``GET /v1/users/{user_id}/recommendations``."""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from recforge.lists import StoreUnavailable
from recforge.serving.answers import Answer, explanations, render, user_answer, warn_store
from recforge.serving.deps import Serving, get_serving
from recforge.serving.fresh import FreshEvent
from recforge.serving.model import ServedModel
from recforge.serving.routers.params import (
    EXCLUDE_DESCRIPTION,
    K_DESCRIPTION,
    check_id,
    effective_k,
    exclude_indices,
)
from recforge.serving.schemas import Recommendations, errors

#: Most history items an explanation lists per recommended item.
MAX_EXPLAIN = 20
EXPLAIN_DESCRIPTION = (
    "Add to each item the history items that contributed most to its score, with their shares "
    f"(0: none; at most {MAX_EXPLAIN})."
)

router = APIRouter(prefix="/v1/users", tags=["recommendations"])


@router.get(
    "/{user_id:id}/recommendations",
    response_model=None,
    responses={200: {"model": Recommendations}, **errors(401, 403, 404, 422, 503)},
    summary="Top-k items for a user",
)
async def recommendations(
    request: Request,
    user_id: Annotated[str, Path(description="External user id (at most data.max_id_length characters).")],
    serving: Annotated[Serving, Depends(get_serving)],
    k: Annotated[int | None, Query(ge=1, description=K_DESCRIPTION)] = None,
    exclude: Annotated[str | None, Query(description=EXCLUDE_DESCRIPTION)] = None,
    explain: Annotated[int, Query(ge=0, le=MAX_EXPLAIN, description=EXPLAIN_DESCRIPTION)] = 0,
) -> Response:
    """Precomputed for known users, folded in for users with events newer than the model,
    time-decayed popular items for everyone else. (An API key is needed when
    ``serving.auth_reads`` is on.)

    A precomputed or popular answer is a few microseconds of lookups and is answered on the
    event loop; a fold-in (CPU-bound) and any Redis lookup (network I/O) run in the thread pool.
    """
    serving.authorize_read(request)
    check_id(user_id, "user_id", serving.config)
    served = serving.served(user_id)
    count = effective_k(k, serving.config)
    drop = exclude_indices(exclude, served, serving.config)
    if serving.blocking_reads:
        return await run_in_threadpool(_recommend, serving, served, user_id, count, drop, explain)
    events = fresh_events(serving, served, user_id)
    if events or explain:
        return await run_in_threadpool(_answer, serving, served, user_id, count, drop, events, explain)
    return _answer(serving, served, user_id, count, drop, events)


def _recommend(
    serving: Serving, served: ServedModel, user_id: str, count: int, drop: np.ndarray, explain: int
) -> Response:
    return _answer(serving, served, user_id, count, drop, fresh_events(serving, served, user_id), explain)


def fresh_events(serving: Serving, served: ServedModel, user_id: str) -> list[FreshEvent]:
    """The user's events newer than the model (none when the fresh-event store is down)."""
    try:
        events = serving.fresh.get(user_id, served.cutoff_us)
    except StoreUnavailable as error:  # answer without fresh events rather than not at all
        warn_store(error)
        return []
    return serving.erasures.keep(events, serving.erasures.of(user_id))


def _answer(
    serving: Serving,
    served: ServedModel,
    user_id: str,
    count: int,
    drop: np.ndarray,
    events: list[FreshEvent],
    explain: int = 0,
) -> Response:
    answer = counted_answer(serving, served, user_id, count, drop, events)
    explained = explanations(served, user_id, answer, events, explain) if explain else None
    return Response(render("user_id", user_id, served, answer, explained), media_type="application/json")


def counted_answer(
    serving: Serving,
    served: ServedModel,
    user_id: str,
    count: int,
    drop: np.ndarray,
    events: list[FreshEvent],
) -> Answer:
    """One user's answer (:func:`~recforge.serving.answers.user_answer`), counted in the metrics."""
    metrics = serving.metrics
    started = time.perf_counter()
    erased = serving.erasures.of(user_id)
    forget = bool(erased) and serving.erasures.forgets(served, erased)
    answer = user_answer(served, user_id, count, drop, events, forget=forget)
    if answer.source == "foldin":
        metrics.foldins.inc()
        metrics.foldin_latency.observe(time.perf_counter() - started)
    elif answer.fallback is not None:
        metrics.fallbacks.labels(answer.fallback).inc()
    metrics.recommendations.labels("users", answer.source).inc()
    return answer
