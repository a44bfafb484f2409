"""``GET /healthz`` (the process answers) and ``GET /readyz`` (a model is loaded)."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Response

from recforge.serving.deps import Serving, get_serving
from recforge.serving.schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=None, responses={200: {"model": Health}}, summary="Liveness")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get(
    "/readyz",
    response_model=None,
    responses={200: {"model": Ready}, 503: {"model": Ready, "description": "No model loaded yet."}},
    summary="Readiness: a model is loaded",
)
async def readyz(serving: Annotated[Serving, Depends(get_serving)]) -> Response:
    """Ready when a (verified) model version is served. ``published_version`` is what the
    registry publishes, ``served_version`` what this process answers from; when they differ
    (the published one failed verification, or is still loading), ``reason`` says why."""
    holder = serving.holder
    served = holder.current
    if served is None:
        body = {
            "status": "not ready",
            "reason": holder.last_error or "no model is published yet",
            "published_version": holder.published,
        }
        return Response(orjson.dumps(body), status_code=503, media_type="application/json")
    body = {
        "status": "ready",
        "model_version": served.version,
        "served_version": served.version,
        "published_version": holder.published,
    }
    mismatch = holder.mismatch
    if mismatch:
        body["reason"] = mismatch
    return Response(orjson.dumps(body), media_type="application/json")
