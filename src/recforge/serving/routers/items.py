"""``GET /v1/items/{item_id}/similar``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from recforge.serving import answers
from recforge.serving.answers import item_answer, render
from recforge.serving.deps import Serving, get_serving
from recforge.serving.model import ServedModel
from recforge.serving.routers.params import (
    EXCLUDE_DESCRIPTION,
    FILTER_PARAMETERS,
    K_DESCRIPTION,
    check_id,
    fields_of,
    filters_of,
    query_of,
)
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
    openapi_extra={"parameters": FILTER_PARAMETERS},
    summary="Items similar to an item",
)
async def similar(
    request: Request,
    item_id: Annotated[str, Path(description="External item id (at most data.max_id_length characters).")],
    serving: Annotated[Serving, Depends(get_serving)],
    k: Annotated[int | None, Query(ge=1, description=K_DESCRIPTION)] = None,
    exclude: Annotated[str | None, Query(description=EXCLUDE_DESCRIPTION)] = None,
    user_id: Annotated[str | None, Query(description=USER_DESCRIPTION)] = None,
) -> Response:
    """The precomputed neighbours of a known item (new arrivals: from their attribute-mapped
    factors); popular items for an unknown one; only available items, of the given
    categories. (An API key is needed when ``serving.auth_reads`` is on.)"""
    serving.authorize_read(request)
    check_id(item_id, "item_id", serving.config)
    if user_id is not None:
        check_id(user_id, "user_id", serving.config)
    served = serving.served(user_id)
    category, fields = filters_of(request)
    query = query_of(k, exclude, category, served, serving.config)
    wanted = fields_of(fields)
    if serving.blocking_reads:  # Redis: network I/O off the event loop
        return await run_in_threadpool(_answer, serving, served, item_id, query, wanted, user_id)
    return _answer(serving, served, item_id, query, wanted, user_id)


def _answer(
    serving: Serving,
    served: ServedModel,
    item_id: str,
    query: answers.Query,
    fields: tuple[str, ...],
    user_id: str | None,
) -> Response:
    state = served.catalog.state
    answer = item_answer(served, state, item_id, query)
    if answer.fallback is not None:
        serving.metrics.fallbacks.labels(answer.fallback).inc()
    serving.metrics.recommendations.labels("items", answer.source).inc()
    body = render("item_id", item_id, served, state, answer, fields, user_id=user_id)
    return Response(body, media_type="application/json")
