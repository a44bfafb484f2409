"""``GET /v1/items/{item_id}/similar``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from recforge.config import Config
from recforge.serving.deps import get_metrics, get_settings, read_access, served_model
from recforge.serving.metrics import Metrics
from recforge.serving.model import ServedModel
from recforge.serving.recommend import item_answer, render
from recforge.serving.routers.params import K_DESCRIPTION, check_id, effective_k
from recforge.serving.schemas import SimilarItems, errors

router = APIRouter(prefix="/v1/items", tags=["similar items"], dependencies=[Depends(read_access)])


@router.get(
    "/{item_id}/similar",
    response_model=None,
    responses={200: {"model": SimilarItems}, **errors(401, 403, 422, 503)},
    summary="Items similar to an item",
)
def similar(
    item_id: Annotated[str, Path(description="External item id (at most data.max_id_length characters).")],
    served: Annotated[ServedModel, Depends(served_model)],
    settings: Annotated[Config, Depends(get_settings)],
    metrics: Annotated[Metrics, Depends(get_metrics)],
    k: Annotated[int | None, Query(ge=1, description=K_DESCRIPTION)] = None,
) -> Response:
    """The precomputed neighbours of a known item; popular items for an unknown one."""
    check_id(item_id, "item_id", settings)
    answer = item_answer(served, item_id, effective_k(k, settings))
    if answer.fallback is not None:
        metrics.fallbacks.labels(answer.fallback).inc()
    metrics.recommendations.labels("items", answer.source).inc()
    return Response(render("item_id", item_id, served, answer), media_type="application/json")
