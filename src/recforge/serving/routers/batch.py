"""``POST /v1/recommendations``: the lists of up to ``serving.max_batch_users`` users at once."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from recforge.serving.answers import Query, body
from recforge.serving.deps import Serving, get_serving
from recforge.serving.model import ServedModel
from recforge.serving.routers.params import check_id, query_of
from recforge.serving.routers.users import counted_answer, fresh_events
from recforge.serving.schemas import BatchRecommendations, BatchRequest, errors

router = APIRouter(prefix="/v1", tags=["recommendations"])


@router.post(
    "/recommendations",
    response_model=None,
    responses={200: {"model": BatchRecommendations}, **errors(400, 401, 403, 413, 422, 503)},
    summary="Top-k items for several users",
)
async def batch_recommendations(
    request: Request, payload: BatchRequest, serving: Annotated[Serving, Depends(get_serving)]
) -> Response:
    """Each user answered exactly as ``GET /v1/users/{user_id}/recommendations`` would (the
    same ``k`` and ``exclude`` for all), in the order given: for pages and jobs that need many
    lists in one round trip. While an experiment runs each user is answered from their arm (each
    result names its ``model_version``); otherwise all answers come from one model version."""
    serving.authorize_read(request)
    served = serving.served()
    limit = serving.config.serving.max_batch_users
    if len(payload.users) > limit:
        raise HTTPException(413, f"{len(payload.users)} users in one request; at most {limit}")
    for user_id in payload.users:
        check_id(user_id, "user_id", serving.config)
    exclude = ",".join(payload.exclude or [])
    arms = [serving.served(user_id) for user_id in payload.users]  # read once per user
    queries = {id(arm): query_of(payload.k, exclude, None, arm, serving.config) for arm in arms}
    asked = [(user_id, arm, queries[id(arm)]) for user_id, arm in zip(payload.users, arms, strict=True)]
    return await run_in_threadpool(_answers, serving, served, asked)


def _answers(serving: Serving, served: ServedModel, asked: list[tuple[str, ServedModel, Query]]) -> Response:
    results = []
    for user_id, arm, query in asked:
        state = arm.catalog.state
        erased = serving.erasures.of(user_id)
        events = fresh_events(serving, arm, user_id, erased)
        answer = counted_answer(serving, arm, state, user_id, query, events, erased)
        results.append(body("user_id", user_id, arm, state, answer))
    return Response(
        orjson.dumps({"model_version": served.version, "results": results}), media_type="application/json"
    )
