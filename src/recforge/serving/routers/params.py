"""Checks of path and query parameters shared by the read routers (all answer 422)."""

from __future__ import annotations

import numpy as np
from fastapi import HTTPException

from recforge.config import Config
from recforge.serving.model import ServedModel

__all__ = ["check_id", "effective_k", "exclude_indices"]

K_DESCRIPTION = "How many items (default serving.k_default; larger than serving.k_max is capped)."
EXCLUDE_DESCRIPTION = "Comma-separated item ids never to return (unknown ids are ignored)."


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
        return np.zeros(0, dtype=np.int32)
    ids = [part for part in exclude.split(",") if part]
    limit = settings.serving.max_exclude
    if len(ids) > limit:
        raise HTTPException(422, f"exclude names {len(ids)} items; at most {limit}")
    longest = max((len(part) for part in ids), default=0)
    if longest > settings.data.max_id_length:
        raise HTTPException(422, f"an exclude id is longer than {settings.data.max_id_length} characters")
    found = served.items.lookup(ids)
    return found[found >= 0]
