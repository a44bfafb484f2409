"""``GET /v1/model``: the served version's manifest."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request, Response

from recforge.serving.deps import Serving, get_serving
from recforge.serving.schemas import ModelManifest, errors

router = APIRouter(prefix="/v1", tags=["model"])


@router.get(
    "/model",
    response_model=None,
    responses={200: {"model": ModelManifest}, **errors(401, 403, 503)},
    summary="The served model version",
)
async def model(request: Request, serving: Annotated[Serving, Depends(get_serving)]) -> Response:
    """Version, creation time, model and parameters, data window, metrics, list sizes; the
    served and the published version, and why they differ when they do."""
    serving.authorize_read(request)
    served = serving.served()
    holder = serving.holder
    body = {
        **served.public_manifest,
        "loaded_at": served.loaded_at,
        "served_version": served.version,
        "published_version": holder.published,
    }
    mismatch = holder.mismatch
    if mismatch:
        body["mismatch"] = mismatch
    return Response(orjson.dumps(body, default=str), media_type="application/json")
