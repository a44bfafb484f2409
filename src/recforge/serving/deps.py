"""FastAPI dependencies: settings, stores and checks that routes declare and tests override."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recforge.config import Config
from recforge.serving.fresh import FreshEvents
from recforge.serving.intake import EventIntake
from recforge.serving.metrics import Metrics
from recforge.serving.model import ModelHolder, ServedModel
from recforge.serving.security import ApiKeys

__all__ = [
    "get_api_keys",
    "get_fresh",
    "get_holder",
    "get_intake",
    "get_metrics",
    "get_settings",
    "read_access",
    "require_api_key",
    "served_model",
]

# Dependencies are ``async def`` on purpose: they only read app state, and an async dependency
# runs inline on the event loop instead of costing a thread hop per request.

bearer = HTTPBearer(auto_error=False, description="An API key from serving.api_keys / RECFORGE_API_KEYS.")


async def get_settings(request: Request) -> Config:
    config: Config = request.app.state.config
    return config


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


async def get_fresh(request: Request) -> FreshEvents:
    fresh: FreshEvents = request.app.state.fresh
    return fresh


async def get_intake(request: Request) -> EventIntake:
    intake: EventIntake = request.app.state.intake
    return intake


async def get_api_keys(request: Request) -> ApiKeys:
    keys: ApiKeys = request.app.state.api_keys
    return keys


async def served_model(holder: Annotated[ModelHolder, Depends(get_holder)]) -> ServedModel:
    """The version this request is answered from (read once: a reload never changes it)."""
    served = holder.current
    if served is None:
        reason = f" (last error: {holder.last_error})" if holder.last_error else ""
        raise HTTPException(503, f"no model is loaded yet; publish one with recforge models publish{reason}")
    return served


async def require_api_key(
    keys: Annotated[ApiKeys, Depends(get_api_keys)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """401 without a valid ``Authorization: Bearer <key>``; 403 when no keys are configured."""
    if not keys:
        raise HTTPException(
            403,
            "this endpoint is disabled: no API keys are configured (serving.api_keys or RECFORGE_API_KEYS)",
        )
    if (
        credentials is None
        or credentials.scheme.lower() != "bearer"
        or not keys.check(credentials.credentials)
    ):
        raise HTTPException(
            401, "a valid API key is required: Authorization: Bearer <key>", {"WWW-Authenticate": "Bearer"}
        )


async def read_access(
    settings: Annotated[Config, Depends(get_settings)],
    keys: Annotated[ApiKeys, Depends(get_api_keys)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """The API key check for read endpoints, when ``serving.auth_reads`` asks for it."""
    if settings.serving.auth_reads:
        await require_api_key(keys, credentials)
