"""``GET /v1/users/{user_id}/recommendations``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from recforge.config import Config
from recforge.serving.deps import get_fresh, get_metrics, get_settings, read_access, served_model
from recforge.serving.fresh import FreshEvents
from recforge.serving.metrics import Metrics
from recforge.serving.model import ServedModel
from recforge.serving.recommend import render, user_answer, warn_store
from recforge.serving.routers.params import (
    EXCLUDE_DESCRIPTION,
    K_DESCRIPTION,
    check_id,
    effective_k,
    exclude_indices,
)
from recforge.serving.schemas import Recommendations, errors
from recforge.serving.stores import StoreUnavailable

router = APIRouter(prefix="/v1/users", tags=["recommendations"], dependencies=[Depends(read_access)])


@router.get(
    "/{user_id}/recommendations",
    response_model=None,
    responses={200: {"model": Recommendations}, **errors(401, 403, 422, 503)},
    summary="Top-k items for a user",
)
def recommendations(
    user_id: Annotated[str, Path(description="External user id (at most data.max_id_length characters).")],
    served: Annotated[ServedModel, Depends(served_model)],
    settings: Annotated[Config, Depends(get_settings)],
    fresh: Annotated[FreshEvents, Depends(get_fresh)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
    k: Annotated[int | None, Query(ge=1, description=K_DESCRIPTION)] = None,
    exclude: Annotated[str | None, Query(description=EXCLUDE_DESCRIPTION)] = None,
) -> Response:
    """Precomputed for known users, folded in for users with events newer than the model,
    time-decayed popular items for everyone else."""
    check_id(user_id, "user_id", settings)
    count = effective_k(k, settings)
    drop = exclude_indices(exclude, served, settings)
    try:
        events = fresh.get(user_id, served.cutoff_us)
    except StoreUnavailable as error:  # answer without fresh events rather than not at all
        warn_store(error)
        events = []
    started = time.perf_counter()
    answer = user_answer(served, user_id, count, drop, events)
    if answer.source == "foldin":
        metrics.foldins.inc()
        metrics.foldin_latency.observe(time.perf_counter() - started)
    elif answer.fallback is not None:
        metrics.fallbacks.labels(answer.fallback).inc()
    metrics.recommendations.labels("users", answer.source).inc()
    return Response(render("user_id", user_id, served, answer), media_type="application/json")
