"""``DELETE /v1/users/{user_id}/events``: erase a user's events (admin key), answered 202 once
the deletion is durable."""

from __future__ import annotations

import logging
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from fastapi.concurrency import run_in_threadpool

from recforge._time import parse_time
from recforge.errors import RecforgeError
from recforge.lists import StoreUnavailable
from recforge.serving.deps import Serving, get_serving
from recforge.serving.routers.params import check_id
from recforge.serving.schemas import Erased, errors
from recforge.serving.security import require_admin_key

router = APIRouter(prefix="/v1/users", tags=["erasure"])
log = logging.getLogger("recforge.serving")


@router.delete(
    "/{user_id:id}/events",
    status_code=202,
    response_model=None,
    dependencies=[Depends(require_admin_key)],
    responses={202: {"model": Erased}, **errors(401, 403, 404, 422)},
    summary="Erase a user's events (right to erasure; admin key)",
)
async def erase_events(
    user_id: Annotated[str, Path(description="External user id (at most data.max_id_length characters).")],
    serving: Annotated[Serving, Depends(get_serving)],
    item_id: Annotated[str | None, Query(description="Only the events on this item.")] = None,
    before: Annotated[
        str | None, Query(description="Only the events stamped before this time (ISO 8601).")
    ] = None,
) -> Response:
    """Erases the user's events (all, or those on ``item_id``, or stamped before ``before``).
    Answered once the deletion is durable: from then on the events are in no read of the event
    store and no build, the user's fresh events and precomputed list are no longer served by any
    API process (answers fall back to the popular list until a model built without the events is
    published), and ``recforge events compact`` removes them from disk. An admin key
    (``serving.admin_keys``) is needed: a write key is not enough."""
    config = serving.config
    check_id(user_id, "user_id", config)
    if item_id is not None:
        check_id(item_id, "item_id", config)
    try:
        until = parse_time(before) if before is not None else None
    except RecforgeError as error:
        raise HTTPException(422, f"before: {error}") from None
    store = serving.intake.store
    stone = await run_in_threadpool(
        store.tombstones.add, user_id, item_id, until, max_future_seconds=config.data.max_future_seconds
    )
    try:  # reads drop covered fresh events anyway: this removes the copies
        removed = await run_in_threadpool(
            serving.fresh.erase, user_id, lambda e: stone.covers(e.item_id, e.timestamp_us)
        )
    except StoreUnavailable as error:
        log.error(
            "deletion %s is durable, but its fresh events stay in the store until it expires: %s",
            stone.id,
            error,
        )
        removed = 0
    serving.metrics.erasures.inc()
    record = stone.to_dict()
    body = {
        "deletion": record["id"],
        "user_id": user_id,
        "item_id": item_id,
        "before": record["before"],
        "deleted_at": record["at"],
        "fresh_events_removed": removed,
    }
    return Response(orjson.dumps(body), status_code=202, media_type="application/json")
