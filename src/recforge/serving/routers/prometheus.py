"""``GET /metrics``: Prometheus text exposition."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool

from recforge.serving.deps import Serving, get_serving
from recforge.serving.telemetry import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_model=None,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics"}},
    summary="Prometheus metrics",
)
async def metrics(serving: Annotated[Serving, Depends(get_serving)]) -> Response:
    return Response(await run_in_threadpool(serving.metrics.render), media_type=CONTENT_TYPE)
