"""Serving: a FastAPI service over the published model version.

``create_app(config)`` builds it; ``recforge serve`` runs it on uvicorn. Routes:

* ``GET /v1/users/{user_id}/recommendations?k=10&exclude=i1,i2``: ``{"user_id",
  "recommendation_id", "model_version", "source": "precomputed" | "foldin" | "popular",
  "items": [{"item_id", "score"}]}`` (:mod:`recforge.serving.answers` says which source answers
  when), and ``"experiment": {"name", "arm"}`` while an experiment runs;
* ``GET /v1/items/{item_id}/similar?k=10&user_id=u1``: the same shape, source ``factors``,
  ``cooccurrence`` or ``popular``;
* ``POST /v1/events`` (``Authorization: Bearer <key>``): a JSON array or NDJSON of events,
  answered 202 ``{"accepted", "duplicates", "rejected": [{"index", "reason"}]}`` once the
  accepted ones are durable (:mod:`recforge.serving.intake`);
* ``GET /v1/model``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

Lists come from a :mod:`store <recforge.serving.stores>` (memory-mapped artifact files, or
Redis for several processes); fresh events from :mod:`recforge.serving.fresh`; a newly
published version is swapped in without dropping a request, and experiment arms are routed
(:mod:`recforge.serving.model`); every answer is recorded as an impression
(:mod:`recforge.online.impressions`).
"""

from recforge.serving.app import create_app

__all__ = ["create_app"]
