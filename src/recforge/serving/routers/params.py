"""Checks of path and query parameters shared by the read routers (all answer 422)."""

from __future__ import annotations

import numpy as np
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import QueryParams

from recforge.catalog.record import check_category
from recforge.config import Config
from recforge.serving.answers import NO_ITEMS, Query
from recforge.serving.model import ServedModel
from recforge.serving.ranking import cold_cap

__all__ = [
    "EXPLAIN_PARAMETER",
    "LIST_PARAMETERS",
    "MAX_EXPLAIN",
    "check_id",
    "effective_k",
    "exclude_indices",
    "explain_of",
    "fields_of",
    "list_query",
    "query_of",
]

K_DESCRIPTION = "How many items (default serving.k_default; larger than serving.k_max is capped)."
EXCLUDE_DESCRIPTION = "Comma-separated item ids never to return (unknown ids are ignored)."
CATEGORY_DESCRIPTION = "Comma-separated categories: only items in any of them (available ones, as always)."
FIELDS_DESCRIPTION = "Comma-separated attributes to put in each item (e.g. title,price,image_url)."
#: Most categories or fields one request names.
MAX_NAMES = 64
#: Most history items an explanation lists per recommended item.
MAX_EXPLAIN = 20
EXPLAIN_DESCRIPTION = (
    "Add to each item the history items that contributed most to its score, with their shares "
    f"(0: none; at most {MAX_EXPLAIN})."
)

#: ``k``, ``exclude``, ``category`` and ``fields`` as the OpenAPI document shows them. The list
#: routes read them from the query string themselves (:func:`list_query`): FastAPI's validation
#: of declared parameters costs ~15 us of CPU per request, a tenth of a whole precomputed
#: answer. A bad value still gets FastAPI's 422, naming ``query.<parameter>``.
LIST_PARAMETERS = [
    {"name": "k", "in": "query", "required": False, "description": K_DESCRIPTION,
     "schema": {"type": "integer", "minimum": 1}},
    {"name": "exclude", "in": "query", "required": False, "description": EXCLUDE_DESCRIPTION,
     "schema": {"type": "string"}},
    {"name": "category", "in": "query", "required": False, "description": CATEGORY_DESCRIPTION,
     "schema": {"type": "string", "maxLength": 8192}},
    {"name": "fields", "in": "query", "required": False, "description": FIELDS_DESCRIPTION,
     "schema": {"type": "string", "maxLength": 8192}},
]  # fmt: skip


#: ``explain`` as the OpenAPI document shows it, read by the route like the others
#: (:func:`explain_of`).
EXPLAIN_PARAMETER = {
    "name": "explain",
    "in": "query",
    "required": False,
    "description": EXPLAIN_DESCRIPTION,
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_EXPLAIN, "default": 0},
}


def list_query(request: Request, served: ServedModel, settings: Config) -> tuple[Query, tuple[str, ...]]:
    """The :class:`Query` of a list request's ``k``, ``exclude`` and ``category``, and the
    attributes its ``fields`` names; 422 for a bad one."""
    params = request.query_params
    k, exclude, category = _integer(params, "k", 1), params.get("exclude"), params.get("category")
    return query_of(k, exclude, category, served, settings), fields_of(params.get("fields"))


def explain_of(request: Request) -> int:
    """``explain`` from the query string (0 when absent); 422 unless an integer in
    ``[0, MAX_EXPLAIN]``."""
    value = _integer(request.query_params, "explain", 0, MAX_EXPLAIN)
    return 0 if value is None else value


def _integer(params: QueryParams, name: str, least: int, most: int | None = None) -> int | None:
    """The integer query parameter ``name`` (``None`` when absent), within ``[least, most]``;
    a :class:`RequestValidationError` (FastAPI's 422, with pydantic's wording) otherwise."""
    text = params.get(name)
    if text is None:
        return None
    if len(text) > 20:  # no 4,000-digit parses
        raise _invalid(name, _NOT_AN_INTEGER)
    try:
        value = int(text)
    except ValueError:
        raise _invalid(name, _NOT_AN_INTEGER) from None
    if value < least:
        raise _invalid(name, f"Input should be greater than or equal to {least}")
    if most is not None and value > most:
        raise _invalid(name, f"Input should be less than or equal to {most}")
    return value


_NOT_AN_INTEGER = "Input should be a valid integer, unable to parse string as an integer"


def _invalid(name: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("query", name), "msg": message}])


_RESERVED = frozenset({"item_id", "score", "cold"})


def check_id(value: str, what: str, settings: Config) -> None:
    limit = settings.data.max_id_length
    if len(value) > limit:
        raise HTTPException(422, f"{what} is longer than {limit} characters")
    if not value:
        raise HTTPException(422, f"{what} must not be empty")


def effective_k(k: int | None, settings: Config) -> int:
    """``k`` as asked (``k_default`` when not), capped at ``k_max``."""
    serving = settings.serving
    return min(serving.k_default if k is None else k, serving.k_max)


def exclude_indices(exclude: str | None, served: ServedModel, settings: Config) -> np.ndarray:
    """The known item indices named by ``exclude``."""
    if not exclude:
        return NO_ITEMS
    ids = [part for part in exclude.split(",") if part]
    limit = settings.serving.max_exclude
    if len(ids) > limit:
        raise HTTPException(422, f"exclude names {len(ids)} items; at most {limit}")
    longest = max((len(part) for part in ids), default=0)
    if longest > settings.data.max_id_length:
        raise HTTPException(422, f"an exclude id is longer than {settings.data.max_id_length} characters")
    found = np.fromiter(map(served.catalog.index, ids), dtype=np.int32, count=len(ids))
    return np.unique(found[found >= 0])


def categories_of(category: str | None) -> tuple[str, ...] | None:
    """The categories named by ``category`` (``None`` when not given); 422 for a bad name."""
    if category is None:
        return None
    names = tuple(dict.fromkeys(part.strip() for part in category.split(",") if part.strip()))
    if not names:
        raise HTTPException(422, "category names no category")
    if len(names) > MAX_NAMES:
        raise HTTPException(422, f"category names {len(names)} categories; at most {MAX_NAMES}")
    for name in names:
        problem = check_category(name)
        if problem:
            raise HTTPException(422, f"category: {problem}")
    return names


def fields_of(fields: str | None) -> tuple[str, ...]:
    """The attribute names of ``fields``; 422 for too many or a reserved one."""
    if not fields:
        return ()
    names = tuple(dict.fromkeys(part.strip() for part in fields.split(",") if part.strip()))
    if len(names) > MAX_NAMES:
        raise HTTPException(422, f"fields names {len(names)} attributes; at most {MAX_NAMES}")
    clash = sorted(_RESERVED.intersection(names))
    if clash:
        raise HTTPException(422, f"fields cannot name {clash[0]!r}: every item has it already")
    if any(len(name) > 64 for name in names):
        raise HTTPException(422, "an attribute name in fields is longer than 64 characters")
    return names


def query_of(
    k: int | None, exclude: str | None, category: str | None, served: ServedModel, settings: Config
) -> Query:
    """The :class:`Query` of a read request's parameters."""
    count = effective_k(k, settings)
    return Query(
        count,
        exclude_indices(exclude, served, settings),
        categories_of(category),
        cold_cap(count, settings.catalog.max_cold_share),
    )
