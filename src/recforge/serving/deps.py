"""What routes get from the app: one :class:`Serving` object.

Everything a route needs is built once by the lifespan into one :class:`Serving` object.
Routes take it through the single dependency :func:`get_serving`, or, on the two routes every
page view calls (recommendations, similar items), read it with :func:`serving_of`: FastAPI
resolves every dependency of every request, and on the hot path of a lookup that costs more
than the lookup itself (~15 us). The dependency is ``async def`` because it only reads app
state: an async dependency runs inline on the event loop instead of costing a thread hop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recforge.catalog import CatalogStore
from recforge.config import Config
from recforge.serving.erasure import Erasures
from recforge.serving.fresh import FreshEvents
from recforge.serving.intake import EventIntake
from recforge.serving.model import ModelHolder, ServedModel
from recforge.serving.security import ApiKeys
from recforge.serving.telemetry import Metrics

__all__ = ["Serving", "bearer", "get_serving", "require_api_key", "serving_of"]

bearer = HTTPBearer(auto_error=False, description="An API key from serving.api_keys / RECFORGE_API_KEYS.")


@dataclass
class Serving:
    """The settings, stores and state of one app."""

    config: Config
    metrics: Metrics
    holder: ModelHolder
    fresh: FreshEvents
    intake: EventIntake
    api_keys: ApiKeys
    #: the catalog store in the home (item writes go here; every process reads it)
    catalog: CatalogStore
    #: Whether list and fresh-event lookups do network I/O (Redis): then reads run in the
    #: thread pool; with memory-mapped lists they run on the event loop.
    blocking_reads: bool
    #: The keys of admin routes (``serving.admin_keys``), apart from the write keys above.
    admin_keys: ApiKeys
    #: The deletions every answer honours.
    erasures: Erasures

    def served(self, user_id: str | None = None) -> ServedModel:
        """The version this request is answered from (read once: a reload never changes it):
        ``user_id``'s arm while an experiment runs, else the published one; 503 when none is
        loaded."""
        served = self.holder.served(user_id)
        if served is None:
            last = self.holder.last_error
            reason = f" (last error: {last})" if last else ""
            raise HTTPException(
                503, f"no model is loaded yet; publish one with recforge models publish{reason}"
            )
        return served

    def authorize(self, scheme: str | None, key: str | None) -> None:
        """401 without a valid ``Authorization: Bearer <key>``; 403 when no keys are configured."""
        if not self.api_keys:
            raise HTTPException(
                403,
                "this endpoint is disabled: no API keys are configured (serving.api_keys, RECFORGE_API_KEYS)",
            )
        if scheme is None or key is None or scheme.lower() != "bearer" or not self.api_keys.check(key):
            raise HTTPException(
                401,
                "a valid API key is required: Authorization: Bearer <key>",
                {"WWW-Authenticate": "Bearer"},
            )

    def authorize_read(self, request: Request) -> None:
        """The API key check of read routes, when ``serving.auth_reads`` asks for it."""
        if self.config.serving.auth_reads:
            scheme, _, key = request.headers.get("authorization", "").partition(" ")
            self.authorize(scheme or None, key.strip() or None)


def serving_of(request: Request) -> Serving:
    """The app's :class:`Serving` (built by its lifespan)."""
    serving: Serving = request.app.state.serving
    return serving


async def get_serving(request: Request) -> Serving:
    return serving_of(request)


async def require_api_key(
    serving: Annotated[Serving, Depends(get_serving)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """The API key check of write routes (declared as a dependency: it documents the scheme)."""
    if credentials is None:
        serving.authorize(None, None)
    else:
        serving.authorize(credentials.scheme, credentials.credentials)
