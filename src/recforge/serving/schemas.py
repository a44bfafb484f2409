"""The shapes of request and response bodies, for the OpenAPI document.

Handlers build their JSON with orjson directly (faster than validating a model per answer);
these models describe it, and the schemathesis tests check every answer against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BatchRecommendations",
    "BatchRequest",
    "CatalogItem",
    "CategoryItems",
    "Erased",
    "Error",
    "Event",
    "EventsAccepted",
    "Health",
    "ItemsAccepted",
    "ModelManifest",
    "Ready",
    "Recommendations",
    "SimilarItems",
]


class Contribution(BaseModel):
    item_id: str = Field(description="A history item of the user.")
    contribution: float = Field(description="What it adds to the item's score (can be negative).")
    share: float = Field(description="contribution / score: the shares of all history items sum to 1.")


class ScoredItem(BaseModel):
    """An item of an answer; ``fields=`` adds the named attributes beside these."""

    model_config = ConfigDict(extra="allow")

    item_id: str
    score: float
    cold: bool | None = Field(None, description="true for an item without events yet (a new arrival).")
    explanation: list[Contribution] | None = Field(
        None, description="With explain=n: the n history items that contributed most (empty: none)."
    )


class ExperimentArm(BaseModel):
    name: str = Field(description="The running experiment.")
    arm: Literal["control", "treatment"] = Field(description="The arm this user is in (sticky).")


_RECOMMENDATION_ID = (
    "This answer's id: post it with the events it leads to (an event's recommendation_id) to "
    "attribute them to it exactly."
)
_EXPERIMENT = "The experiment and arm that answered (only while one runs)."


class Recommendations(BaseModel):
    user_id: str
    recommendation_id: str = Field(description=_RECOMMENDATION_ID)
    model_version: str
    source: Literal["precomputed", "foldin", "popular"] = Field(
        description="precomputed: the user's list; foldin: folded in from events newer than the "
        "model; popular: the time-decayed popular list (a user the model does not know)."
    )
    items: list[ScoredItem]
    experiment: ExperimentArm | None = Field(None, description=_EXPERIMENT)


class SimilarItems(BaseModel):
    item_id: str
    recommendation_id: str = Field(description=_RECOMMENDATION_ID)
    model_version: str
    source: Literal["factors", "cooccurrence", "popular"] = Field(
        description="factors: cosine of item factors; cooccurrence: item-kNN neighbours; popular: "
        "the popular list (an item the model does not know, or a Popular model)."
    )
    items: list[ScoredItem]
    experiment: ExperimentArm | None = Field(None, description=_EXPERIMENT)


class BatchRequest(BaseModel):
    """Several users' recommendations in one request."""

    model_config = ConfigDict(extra="forbid")

    users: list[str] = Field(min_length=1, description="External user ids (at most serving.max_batch_users).")
    k: int | None = Field(None, ge=1, description="How many items each (default serving.k_default).")
    exclude: list[str] | None = Field(None, description="Item ids never to return to any of them.")


class BatchRecommendations(BaseModel):
    model_version: str
    results: list[Recommendations] = Field(description="One answer per user, in the order asked.")


class CategoryItems(BaseModel):
    category: str
    model_version: str
    source: Literal["popular", "latest"] = Field(
        description="popular: by time-decayed popularity; latest: newest by created_at (score: Unix time)."
    )
    items: list[ScoredItem]


class CatalogItem(BaseModel):
    """An item's catalog record (in a write, every field but ``item_id`` may be left out)."""

    item_id: str | None = None
    categories: list[str] | None = Field(None, description="Category names (no ',' or '|').")
    available: bool | None = Field(None, description="false: sold out or hidden, in no answer.")
    created_at: str | float | None = Field(None, description="ISO 8601 or Unix seconds.")
    attributes: dict[str, str | float | None] | None = Field(
        None, description="A flat object of strings and numbers (title, brand, price, image_url, ...)."
    )


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the event in the request (0-based).")
    reason: str


class EventsAccepted(BaseModel):
    accepted: int = Field(description="Events stored durably by this request.")
    duplicates: int = Field(description="Valid events already stored (same event_id): not stored again.")
    rejected: list[RejectedEvent]


class ItemsAccepted(BaseModel):
    accepted: int = Field(description="Items stored durably (created or changed).")
    new: int = Field(description="Of those, items the catalog did not have.")
    rejected: list[RejectedEvent]


class Event(BaseModel):
    """One event (extra fields are ignored)."""

    event_id: str | None = Field(None, description="Dedupe key; derived from the content when absent.")
    user_id: str
    item_id: str
    event_type: str = Field(description="view, like, cart, purchase, rating (configurable).")
    value: float | None = Field(1.0, description="Default 1.0; the rating for explicit data.")
    timestamp: str | float = Field(description="ISO 8601 (UTC when no zone) or Unix seconds.")
    recommendation_id: str | None = Field(
        None, description="The recommendation_id of the answer that led to this event, if any."
    )


class Erased(BaseModel):
    deletion: str = Field(description="The deletion's id.")
    user_id: str
    item_id: str | None = Field(description="Only the events on this item were erased (null: all).")
    before: str = Field(description="Events stamped before this time were erased (ISO 8601).")
    deleted_at: str = Field(description="When the deletion was recorded (ISO 8601).")
    fresh_events_removed: int = Field(description="Fresh events this process held for the user, removed.")


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str


class Error(BaseModel):
    detail: str
    errors: list[ErrorItem] | None = None


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready", "not ready"]
    model_version: str | None = None
    served_version: str | None = Field(None, description="The version this process answers from.")
    published_version: str | None = Field(None, description="The version the registry publishes.")
    reason: str | None = Field(
        None, description="Why not ready, or why the served version is not the published one."
    )


class ModelManifest(BaseModel):
    """The served version's manifest (file checksums left out)."""

    model_config = ConfigDict(extra="allow")

    version: str
    created: str
    model: str
    params: dict[str, Any]
    data_window: dict[str, Any]
    metrics: dict[str, Any]
    n_users: int
    n_items: int
    loaded_at: float = Field(description="When this process loaded the version (Unix time).")
    served_version: str = Field(description="The version this process answers from.")
    published_version: str | None = Field(description="The version the registry publishes.")
    mismatch: str | None = Field(None, description="Why the served version is not the published one.")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error statuses, all with the :class:`Error` body."""
    text = {
        400: "Bad request (e.g. a body that is not JSON).",
        401: "Missing or wrong API key.",
        403: "No API keys are configured.",
        404: "No such path (an empty id, which clients may fold away, leaves none).",
        413: "Body or event count over the limit.",
        422: "Bad parameters.",
        503: "No model loaded yet, or a store is unavailable.",
    }
    return {code: {"model": Error, "description": text[code]} for code in codes}
