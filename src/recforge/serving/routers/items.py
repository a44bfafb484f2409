"""``GET /v1/items/{item_id}/similar``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from recforge.serving import answers
from recforge.serving.answers import item_answer, render
from recforge.serving.deps import Serving, serving_of
from recforge.serving.model import ServedModel
from recforge.serving.routers.params import LIST_PARAMETERS, check_id, list_query
from recforge.serving.schemas import SimilarItems, errors

USER_DESCRIPTION = (
    "Who is looking (optional): the answer is recorded as an impression of this user, for "
    "click-through attribution, and comes from their arm while an experiment runs."
)

#: ``user_id`` as the OpenAPI document shows it (read like the list parameters).
USER_PARAMETER = {"name": "user_id", "in": "query", "required": False, "description": USER_DESCRIPTION,
                  "schema": {"type": "string"}}  # fmt: skip

router = APIRouter(prefix="/v1/items", tags=["similar items"])


@router.get(
    "/{item_id:id}/similar",
    response_model=None,
    responses={200: {"model": SimilarItems}, **errors(401, 403, 404, 422, 503)},
    openapi_extra={"parameters": [*LIST_PARAMETERS, USER_PARAMETER]},
    summary="Items similar to an item",
)
async def similar(
    request: Request,
    item_id: Annotated[str, Path(description="External item id (at most data.max_id_length characters).")],
) -> Response:
    """The precomputed neighbours of a known item (new arrivals: from their attribute-mapped
    factors); popular items for an unknown one; only available items, of the given
    categories. (An API key is needed when ``serving.auth_reads`` is on.)"""
    serving = serving_of(request)
    serving.authorize_read(request)
    check_id(item_id, "item_id", serving.config)
    user_id = request.query_params.get("user_id")
    if user_id is not None:
        check_id(user_id, "user_id", serving.config)
    served = serving.served(user_id)
    query, wanted = list_query(request, served, serving.config)
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
