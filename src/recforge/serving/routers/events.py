"""``POST /v1/events``: events in, answered 202 once they are durable."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from recforge.serving.deps import Serving, get_serving, require_api_key
from recforge.serving.intake import BadEvents
from recforge.serving.schemas import Event, EventsAccepted, errors

router = APIRouter(prefix="/v1", tags=["events"])
log = logging.getLogger("recforge.serving")

_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"type": "array", "items": Event.model_json_schema(), "minItems": 1, "maxItems": 10_000}
        },
        "application/x-ndjson": {"schema": {"type": "string", "description": "One JSON event per line."}},
    },
}


#: What a client (or a stateful fuzzer) can do next with a user it posted events for.
_LINKS = {
    "RecommendationsOfTheFirstUser": {
        "operationRef": "#/paths/~1v1~1users~1{user_id}~1recommendations/get",
        "parameters": {"user_id": "$request.body#/0/user_id"},
    },
    "EraseTheFirstUser": {
        "operationRef": "#/paths/~1v1~1users~1{user_id}~1events/delete",
        "parameters": {"user_id": "$request.body#/0/user_id"},
    },
}


@router.post(
    "/events",
    status_code=202,
    response_model=None,
    dependencies=[Depends(require_api_key)],
    responses={202: {"model": EventsAccepted, "links": _LINKS}, **errors(400, 401, 403, 413, 422, 503)},
    openapi_extra={"requestBody": _BODY},
    summary="Post events (JSON array or NDJSON)",
)
async def post_events(
    request: Request,
    serving: Annotated[Serving, Depends(get_serving)],
) -> Response:
    """Validates the events (each bad one is listed with its index and reason), stores the good
    ones durably in the event store, and only then answers. Events newer than the served model
    are folded into their users' recommendations right away. An event whose ``event_id`` is
    already stored counts as a duplicate and is not stored twice."""
    intake = serving.intake
    body = await _read_body(request, serving.config.serving.max_body_bytes)
    try:
        table, rejections = await run_in_threadpool(intake.prepare, body)
    except BadEvents as error:
        raise HTTPException(error.status, str(error)) from None
    try:
        counts = await asyncio.wrap_future(intake.submit(table, rejections))
    except (ValueError, TypeError) as error:
        raise HTTPException(422, f"the events could not be stored: {error}") from None
    except Exception as error:
        log.error("event intake failed: %s", error)
        raise HTTPException(503, f"the event store is unavailable: {error}") from None
    answer = {
        "accepted": counts.accepted,
        "duplicates": counts.duplicates,
        "rejected": [{"index": r.location["index"], "reason": r.reason} for r in rejections],
    }
    return Response(orjson.dumps(answer), status_code=202, media_type="application/json")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise HTTPException(400, "Content-Length is not a number") from None
        if size > limit:
            raise HTTPException(413, f"the body has {size} bytes; at most {limit}")
    chunks = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise HTTPException(413, f"the body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise HTTPException(400, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)
