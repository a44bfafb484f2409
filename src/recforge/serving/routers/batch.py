"""``POST /v1/recommendations``: the lists of up to ``serving.max_batch_users`` users at once."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from recforge.serving.answers import body
from recforge.serving.deps import Serving, get_serving
from recforge.serving.model import ServedModel
from recforge.serving.routers.params import check_id, effective_k, exclude_indices
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
    lists in one round trip. All answers come from one model version."""
    serving.authorize_read(request)
    served = serving.served()
    limit = serving.config.serving.max_batch_users
    if len(payload.users) > limit:
        raise HTTPException(413, f"{len(payload.users)} users in one request; at most {limit}")
    for user_id in payload.users:
        check_id(user_id, "user_id", serving.config)
    count = effective_k(payload.k, serving.config)
    drop = exclude_indices(",".join(payload.exclude or []), served, serving.config)
    return await run_in_threadpool(_answers, serving, served, payload.users, count, drop)


def _answers(
    serving: Serving, served: ServedModel, users: list[str], count: int, drop: np.ndarray
) -> Response:
    results = [
        body(
            "user_id",
            user_id,
            served,
            counted_answer(serving, served, user_id, count, drop, fresh_events(serving, served, user_id)),
        )
        for user_id in users
    ]
    return Response(
        orjson.dumps({"model_version": served.version, "results": results}), media_type="application/json"
    )
