"""The catalog over HTTP: ``GET``, ``PUT``, ``PATCH /v1/items/{item_id}`` and ``POST /v1/items``.

Writes need the write key (``Authorization: Bearer <key>``), are validated as files are
(:func:`~recforge.catalog.record.validate_record`; over HTTP a record is exactly the five fields)
and answered once durable in the catalog store, after this process has applied them to its
answers; every other process applies them within ``[catalog] poll_seconds``
(:mod:`recforge.serving.live_catalog`). ``PUT`` replaces the whole record, ``PATCH`` changes the
fields it has (attributes merged key by key, ``null`` deleting one), ``POST`` upserts a batch (a
JSON array or NDJSON, at most ``[catalog] max_items_per_request``) as ``PATCH`` does and answers
202 with the rejected ones by index, like events; rejected records go to the quarantine.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from recforge.catalog.record import ItemPatch, validate_record
from recforge.catalog.store import UpsertResult
from recforge.data.quarantine import Quarantine
from recforge.data.validation import Rejection
from recforge.errors import RecforgeError
from recforge.serving.deps import Serving, get_serving, require_api_key
from recforge.serving.routers.events import _read_body
from recforge.serving.routers.params import check_id
from recforge.serving.schemas import CatalogItem, ItemsAccepted, errors

router = APIRouter(prefix="/v1/items", tags=["catalog"])

_RECORD = {"required": True, "content": {"application/json": {"schema": CatalogItem.model_json_schema()}}}
_BATCH = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "array", "items": CatalogItem.model_json_schema()}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "One JSON item per line."}},
    },
}


@router.get(
    "/{item_id}",
    response_model=None,
    responses={200: {"model": CatalogItem}, **errors(401, 403, 404, 422)},
    summary="An item's catalog record",
)
async def get_item(
    request: Request,
    item_id: Annotated[str, Path(description="External item id.")],
    serving: Annotated[Serving, Depends(get_serving)],
) -> Response:
    serving.authorize_read(request)
    check_id(item_id, "item_id", serving.config)
    row = await run_in_threadpool(serving.catalog.get, item_id)
    if row is None:
        raise HTTPException(404, f"no item {item_id!r} in the catalog")
    return Response(orjson.dumps(row.to_dict()), media_type="application/json")


@router.put(
    "/{item_id}",
    response_model=None,
    dependencies=[Depends(require_api_key)],
    responses={200: {"model": CatalogItem}, **errors(400, 401, 403, 413, 422, 503)},
    openapi_extra={"requestBody": _RECORD},
    summary="Create or replace an item (the whole record)",
)
async def put_item(
    request: Request,
    item_id: Annotated[str, Path(description="External item id.")],
    serving: Annotated[Serving, Depends(get_serving)],
) -> Response:
    """Fields the record lacks take their defaults (no categories, available, no attributes;
    ``created_at`` stays what it was, or now for a new item)."""
    return await _write_one(request, item_id, serving, replace=True)


@router.patch(
    "/{item_id}",
    response_model=None,
    dependencies=[Depends(require_api_key)],
    responses={200: {"model": CatalogItem}, **errors(400, 401, 403, 413, 422, 503)},
    openapi_extra={"requestBody": _RECORD},
    summary='Change some fields of an item (e.g. {"available": false})',
)
async def patch_item(
    request: Request,
    item_id: Annotated[str, Path(description="External item id.")],
    serving: Annotated[Serving, Depends(get_serving)],
) -> Response:
    """Only the fields given change; ``attributes`` are merged key by key (``null`` deletes
    one). Once answered, no answer of any serving process includes an unavailable item after
    ``[catalog] poll_seconds``."""
    return await _write_one(request, item_id, serving, replace=False)


@router.post(
    "",
    status_code=202,
    response_model=None,
    dependencies=[Depends(require_api_key)],
    responses={202: {"model": ItemsAccepted}, **errors(400, 401, 403, 413, 422, 503)},
    openapi_extra={"requestBody": _BATCH},
    summary="Upsert a batch of items (JSON array or NDJSON)",
)
async def post_items(request: Request, serving: Annotated[Serving, Depends(get_serving)]) -> Response:
    """Each record changes only the fields it has; bad ones are listed by index with their
    reason (and quarantined), the good ones stored durably before the answer."""
    body = await _read_body(request, serving.config.serving.max_body_bytes)
    records, broken = _parse_batch(body, serving.config.catalog.max_items_per_request)
    patches, rejections = _validate(records, broken, serving.config.data.max_id_length)
    result = await run_in_threadpool(_store, serving, patches, rejections, False)
    answer = {
        "accepted": result.items,
        "new": result.new,
        "rejected": [{"index": r.location["index"], "reason": r.reason} for r in rejections],
    }
    return Response(orjson.dumps(answer), status_code=202, media_type="application/json")


# helpers -------------------------------------------------------------------------------------------
async def _write_one(request: Request, item_id: str, serving: Serving, *, replace: bool) -> Response:
    check_id(item_id, "item_id", serving.config)
    body = await _read_body(request, serving.config.serving.max_body_bytes)
    try:
        record = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise HTTPException(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(record, dict):
        raise HTTPException(422, "the body must be a JSON object (an item record)")
    if str(record.setdefault("item_id", item_id)) != item_id:
        raise HTTPException(422, f"the body's item_id {record['item_id']!r} is not the path's {item_id!r}")
    result = validate_record(record, max_id_length=serving.config.data.max_id_length)
    if not isinstance(result, ItemPatch):
        serving.metrics.catalog_items.labels("rejected").inc()
        raise HTTPException(422, "; ".join(result))
    await run_in_threadpool(_store, serving, [result], [], replace)
    row = await run_in_threadpool(serving.catalog.get, item_id)
    assert row is not None
    return Response(orjson.dumps(row.to_dict()), media_type="application/json")


def _store(
    serving: Serving, patches: list[ItemPatch], rejections: list[Rejection], replace: bool
) -> UpsertResult:
    """Quarantine the rejected, upsert the good (durable), apply them to this process's answers."""
    if rejections:
        with Quarantine(serving.config.home, "http-items") as quarantine:
            quarantine.write(rejections)
        serving.metrics.catalog_items.labels("rejected").inc(len(rejections))
    try:
        result = serving.catalog.upsert(patches, replace=replace)
    except RecforgeError as error:
        raise HTTPException(503, str(error)) from None
    serving.metrics.catalog_items.labels("upserted").inc(result.items)
    served = serving.holder.current
    if served is not None:
        served.catalog.refresh()
        serving.metrics.catalog_seq.set(served.catalog.state.seq)
    return result


def _parse_batch(body: bytes, limit: int) -> tuple[list[Any], dict[int, str]]:
    """The records of a JSON array or NDJSON body, and ``{index: reason}`` of lines that are not
    JSON; 400 for a broken array, 413 over ``limit`` records."""
    stripped = body.lstrip()
    if stripped[:1] == b"[":
        try:
            records = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise HTTPException(400, f"the body is not valid JSON: {error}") from None
        broken: dict[int, str] = {}
    else:
        lines = [line for line in body.split(b"\n") if line.strip()]
        records, broken = [], {}
        for index, line in enumerate(lines):
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError as error:
                records.append(None)
                broken[index] = f"invalid JSON: {error}"
    if len(records) > limit:
        raise HTTPException(413, f"too many items in one request: {len(records)} (at most {limit})")
    return records, broken


def _validate(
    records: list[Any], broken: dict[int, str], max_id_length: int
) -> tuple[list[ItemPatch], list[Rejection]]:
    patches: list[ItemPatch] = []
    rejections: list[Rejection] = []
    for index, record in enumerate(records):
        reason = broken.get(index)
        if reason is None:
            result = validate_record(record, max_id_length=max_id_length)
            if isinstance(result, ItemPatch):
                patches.append(result)
                continue
            reason = "; ".join(result)
        rejections.append(Rejection("http", {"index": index}, reason, record))
    return patches, rejections
