"""``GET /v1/model``: the served version's manifest."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Response

from recforge.serving.deps import read_access, served_model
from recforge.serving.model import ServedModel
from recforge.serving.schemas import ModelManifest, errors

router = APIRouter(prefix="/v1", tags=["model"], dependencies=[Depends(read_access)])


@router.get(
    "/model",
    response_model=None,
    responses={200: {"model": ModelManifest}, **errors(401, 403, 503)},
    summary="The served model version",
)
async def model(served: Annotated[ServedModel, Depends(served_model)]) -> Response:
    """Version, creation time, model and parameters, data window, metrics, list sizes."""
    body = {**served.public_manifest, "loaded_at": served.loaded_at}
    return Response(orjson.dumps(body, default=str), media_type="application/json")
