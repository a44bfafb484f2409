"""``GET /v1/categories/{name}/popular`` and ``GET /v1/categories/{name}/latest``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from recforge.serving.answers import category_latest, category_popular, render
from recforge.serving.deps import Serving, get_serving
from recforge.serving.routers.params import (
    EXCLUDE_DESCRIPTION,
    FIELDS_DESCRIPTION,
    K_DESCRIPTION,
    categories_of,
    effective_k,
    fields_of,
    query_of,
)
from recforge.serving.schemas import CategoryItems, errors

router = APIRouter(prefix="/v1/categories", tags=["categories"])
_NAME = Path(description="A category name.")


@router.get(
    "/{name}/popular",
    response_model=None,
    responses={200: {"model": CategoryItems}, **errors(401, 403, 404, 422, 503)},
    summary="A category's most popular available items",
)
async def popular(
    request: Request,
    name: Annotated[str, _NAME],
    serving: Annotated[Serving, Depends(get_serving)],
    k: Annotated[int | None, Query(ge=1, description=K_DESCRIPTION)] = None,
    exclude: Annotated[str | None, Query(description=EXCLUDE_DESCRIPTION)] = None,
    fields: Annotated[str | None, Query(description=FIELDS_DESCRIPTION)] = None,
) -> Response:
    """By the time-decayed popularity the served model was trained with (``sum_u r_ui``); new
    arrivals (no events yet) only after the others, at most ``[catalog] max_cold_share`` before."""
    serving.authorize_read(request)
    served = serving.served()
    query = query_of(k, exclude, name, served, serving.config)
    wanted = fields_of(fields)

    def answer() -> Response:
        state = served.catalog.state
        _known(state.members, name)
        return Response(
            render("category", name, served, state, category_popular(served, state, query), wanted),
            media_type="application/json",
        )

    return await run_in_threadpool(answer)


@router.get(
    "/{name}/latest",
    response_model=None,
    responses={200: {"model": CategoryItems}, **errors(401, 403, 404, 422, 503)},
    summary="A category's newest available items",
)
async def latest(
    request: Request,
    name: Annotated[str, _NAME],
    serving: Annotated[Serving, Depends(get_serving)],
    k: Annotated[int | None, Query(ge=1, description=K_DESCRIPTION)] = None,
    fields: Annotated[str | None, Query(description=FIELDS_DESCRIPTION)] = None,
) -> Response:
    """Newest first by ``created_at`` (the score is its Unix time), whether or not they have
    events."""
    serving.authorize_read(request)
    served = serving.served()
    categories_of(name)
    count = effective_k(k, serving.config)
    wanted = fields_of(fields)
    state = served.catalog.state
    _known(state.members, name)
    body = render("category", name, served, state, category_latest(state, name, count), wanted)
    return Response(body, media_type="application/json")


def _known(members: Mapping[str, object], name: str) -> None:
    if name not in members:
        raise HTTPException(404, f"no category {name!r} in the catalog")
