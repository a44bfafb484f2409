"""``GET /v1/items/{item_id}/similar``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from recforge.serving.answers import item_answer, render
from recforge.serving.deps import Serving, get_serving
from recforge.serving.model import ServedModel
from recforge.serving.routers.params import K_DESCRIPTION, check_id, effective_k
from recforge.serving.schemas import SimilarItems, errors

USER_DESCRIPTION = (
    "Who is looking (optional): the answer is recorded as an impression of this user, for "
    "click-through attribution, and comes from their arm while an experiment runs."
)

router = APIRouter(prefix="/v1/items", tags=["similar items"])


@router.get(
    "/{item_id:id}/similar",
    response_model=None,
    responses={200: {"model": SimilarItems}, **errors(401, 403, 404, 422, 503)},
    summary="Items similar to an item",
)
async def similar(
    request: Request,
    item_id: Annotated[str, Path(description="External item id (at most data.max_id_length characters).")],
    serving: Annotated[Serving, Depends(get_serving)],
    k: Annotated[int | None, Query(ge=1, description=K_DESCRIPTION)] = None,
    user_id: Annotated[str | None, Query(description=USER_DESCRIPTION)] = None,
) -> Response:
    """The precomputed neighbours of a known item; popular items for an unknown one. (An API
    key is needed when ``serving.auth_reads`` is on.)"""
    serving.authorize_read(request)
    check_id(item_id, "item_id", serving.config)
    if user_id is not None:
        check_id(user_id, "user_id", serving.config)
    served = serving.served(user_id)
    count = effective_k(k, serving.config)
    if serving.blocking_reads:  # Redis: network I/O off the event loop
        return await run_in_threadpool(_answer, serving, served, item_id, count, user_id)
    return _answer(serving, served, item_id, count, user_id)


def _answer(serving: Serving, served: ServedModel, item_id: str, count: int, user_id: str | None) -> Response:
    answer = item_answer(served, item_id, count)
    if answer.fallback is not None:
        serving.metrics.fallbacks.labels(answer.fallback).inc()
    serving.metrics.recommendations.labels("items", answer.source).inc()
    body = render("item_id", item_id, served, answer, user_id=user_id)
    return Response(body, media_type="application/json")
