"""Erasure through the API (issue 14): ``DELETE /v1/users/{user_id}/events`` needs an admin key,
is durable when answered, and from then on no process serves the user's fresh events or
precomputed list: one process with each store, and two real worker processes sharing Redis."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from recforge.artifacts import ModelRegistry
from recforge.data.store import EventStore
from recforge.models import Popular
from recforge.serving import create_app
from tests.serving.conftest import ADMIN_KEY, API_KEY, make_config, publish_version
from tests.serving.factors import ToyFactors
from tests.serving.redis_server import redis_server
from tests.serving.test_server import server

WRITE = {"Authorization": f"Bearer {API_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
FRESH = "2025-06-01T12:00:00Z"


def batch(user, items, start=0):
    return [
        {
            "event_id": f"{user}-{start + j}",
            "user_id": user,
            "item_id": item,
            "event_type": "cart",
            "timestamp": FRESH,
        }
        for j, item in enumerate(items)
    ]


@pytest.fixture
def client(home):
    with TestClient(create_app(make_config(home, admin_keys=[ADMIN_KEY]))) as client:
        yield client


def test_erasure_needs_an_admin_key(home, client):
    assert client.delete("/v1/users/u1/events").status_code == 401
    response = client.delete("/v1/users/u1/events", headers=WRITE)  # a write key is no admin key
    assert response.status_code == 401 and "admin key" in response.json()["detail"]
    with TestClient(create_app(make_config(home))) as other:  # no admin keys: the route is off
        response = other.delete("/v1/users/u1/events", headers=ADMIN)
        assert response.status_code == 403 and "no admin keys" in response.json()["detail"]
    assert EventStore(home).tombstones.read() == []
    for params in ({"before": "someday"}, {"item_id": "x" * 300}):
        response = client.delete("/v1/users/u1/events", params=params, headers=ADMIN)
        assert response.status_code == 422, response.text


def test_a_known_users_list_and_fresh_events_stop_at_once(home, client):
    store = EventStore(home)
    assert "u1" in store.scan(["user_id"]).column("user_id").to_pylist()
    assert client.get("/v1/users/u1/recommendations").json()["source"] == "precomputed"
    assert client.post("/v1/events", json=batch("u1", ["i1", "i2"]), headers=WRITE).json()["accepted"] == 2
    assert client.get("/v1/users/u1/recommendations").json()["source"] == "foldin"

    response = client.delete("/v1/users/u1/events", headers=ADMIN)
    assert response.status_code == 202
    body = response.json()
    assert body["user_id"] == "u1" and body["item_id"] is None and body["fresh_events_removed"] == 2
    assert "u1" not in store.scan(["user_id"]).column("user_id").to_pylist()  # durable, every read
    assert client.get("/v1/users/u1/recommendations").json()["source"] == "popular"
    assert 'recforge_fallbacks_total{reason="erased"} 1.0' in client.get("/metrics").text


def test_a_version_built_after_a_deletion_serves_the_user_again(home, client):
    registry = ModelRegistry(home)
    served = registry.open().model
    seen = served.seen_[served.users_.lookup(["u2"])[0]].indices
    item = served.items_.id(int(seen[0]))
    response = client.delete("/v1/users/u2/events", params={"item_id": item}, headers=ADMIN)
    assert response.status_code == 202 and response.json()["item_id"] == item
    assert client.get("/v1/users/u2/recommendations").json()["source"] == "popular"  # the old version
    version = publish_version(home, make_config(home), ToyFactors(factors=4))  # read after the deletion
    holder = client.app.state.serving.holder
    holder.check()
    assert holder.current.version == version
    rebuilt = registry.open().model
    user = rebuilt.users_.lookup(["u2"])[0]
    assert user >= 0 and item not in rebuilt.items_.ids(rebuilt.seen_[user].indices).tolist()
    assert client.get("/v1/users/u2/recommendations").json()["source"] == "precomputed"


def test_partial_erasure_and_ids_with_slashes(home, client):
    assert client.post("/v1/events", json=batch("a/b", ["i1", "i2"]), headers=WRITE).json()["accepted"] == 2
    for path in ("/v1/users/a%2Fb/recommendations", "/v1/users/a/b/recommendations"):
        body = client.get(path).json()
        assert (body["user_id"], body["source"]) == ("a/b", "foldin")
    response = client.delete("/v1/users/a%2Fb/events", params={"item_id": "i1"}, headers=ADMIN)
    assert response.status_code == 202 and response.json()["fresh_events_removed"] == 1
    events = EventStore(home).scan(["user_id", "item_id"]).to_pylist()
    assert {"user_id": "a/b", "item_id": "i2"} in events and {"user_id": "a/b", "item_id": "i1"} not in events
    assert client.get("/v1/users/a%2Fb/recommendations").json()["source"] == "foldin"  # i2 is still fresh
    # events stamped before a time: the later ones stay
    later = {**batch("c", ["i2"], 5)[0], "timestamp": "2026-01-01"}
    client.post("/v1/events", json=[*batch("c", ["i1"]), later], headers=WRITE)
    response = client.delete("/v1/users/c/events", params={"before": "2025-12-01"}, headers=ADMIN)
    assert response.json()["fresh_events_removed"] == 1
    assert [
        e["item_id"] for e in EventStore(home).scan(["user_id", "item_id"]).to_pylist() if e["user_id"] == "c"
    ] == ["i2"]


@pytest.mark.slow
@pytest.mark.redis
def test_two_workers_on_redis_stop_serving_an_erased_user_at_once(home):
    publish_version(home, make_config(home), Popular())  # worker processes know only real models
    with (
        redis_server() as redis_url,
        server(home, "--workers", "2", "--store", redis_url, RECFORGE_ADMIN_KEYS=ADMIN_KEY) as url,
    ):
        known = "u1"
        assert (
            httpx.post(f"{url}/v1/events", json=batch("fresh-user", ["i1", "i2"]), headers=WRITE).status_code
            == 202
        )
        sources = {
            httpx.get(f"{url}/v1/users/fresh-user/recommendations").json()["source"] for _ in range(12)
        }
        assert sources == {"foldin"}
        first = {httpx.get(f"{url}/v1/users/{known}/recommendations").json()["source"] for _ in range(6)}
        assert first == {"precomputed"}
        for user in ("fresh-user", known):
            assert httpx.delete(f"{url}/v1/users/{user}/events", headers=ADMIN).status_code == 202
        # new connections are spread over both workers: every answer, from either, has stopped
        for user in ("fresh-user", known):
            answers = [httpx.get(f"{url}/v1/users/{user}/recommendations").json() for _ in range(12)]
            assert {a["source"] for a in answers} == {"popular"}, user
        assert 'recforge_fallbacks_total{reason="erased"}' in httpx.get(f"{url}/metrics").text
