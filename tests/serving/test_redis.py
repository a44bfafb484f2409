"""The Redis list store and fresh-event store against a real ``redis-server``."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from recforge.artifacts import ModelRegistry
from recforge.cli.main import main
from recforge.lists import RedisLists
from recforge.models import Popular
from recforge.serving import answers, create_app
from recforge.serving.stores import open_redis_store
from tests.serving.conftest import API_KEY, make_config, publish_version
from tests.serving.redis_server import free_port, redis_server

pytestmark = pytest.mark.redis
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture
def prefix():
    return f"t{uuid.uuid4().hex[:8]}"


def test_lists_in_redis_are_the_artifact_lists(home, redis_url, prefix):
    artifact = ModelRegistry(home).open()
    lists = RedisLists(redis_url, prefix, keep_versions=3)
    model = artifact.model
    assert lists.load(artifact.version, model.users_, model.items_, artifact.lists) is True
    assert lists.load(artifact.version, model.users_, model.items_, artifact.lists) is False  # already there
    assert lists.ready(artifact.version) and lists.versions() == [artifact.version]
    store = open_redis_store(lists, artifact)
    model = artifact.model
    for user in range(len(model.users_)):
        ids, scores = store.user(user, model.users_.id(user))
        assert np.array_equal(ids, artifact.user_ids[user]) and np.array_equal(
            scores, artifact.user_scores[user]
        )
    for item in range(len(model.items_)):
        ids, scores = store.item(item, model.items_.id(item))
        assert np.array_equal(ids, artifact.item_ids[item]) and np.array_equal(
            scores, artifact.item_scores[item]
        )
    assert store.user(0, "not-a-user") is None
    assert np.array_equal(store.popular()[0], artifact.popular_ids)


def test_concurrent_servers_load_a_version_once(home, redis_url, prefix, monkeypatch):
    artifact = ModelRegistry(home).open()
    loads = []
    real = RedisLists.load

    def counted(self, *args, **kwargs):
        loads.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RedisLists, "load", counted)
    stores = []
    threads = [
        threading.Thread(
            target=lambda: stores.append(
                open_redis_store(RedisLists(redis_url, prefix, keep_versions=3), artifact)
            )
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len(stores) == 4


def test_old_versions_are_pruned(home, redis_url, prefix):
    config = make_config(home)
    registry = ModelRegistry(home)
    lists = RedisLists(redis_url, prefix, keep_versions=2)
    versions = [registry.current()] + [
        publish_version(home, config, Popular(), publish=False) for _ in range(2)
    ]
    for version in versions:
        artifact = registry.open(version)
        lists.load(version, artifact.model.users_, artifact.model.items_, artifact.lists)
    assert lists.versions() == versions[1:]
    client = redis.Redis.from_url(redis_url)
    assert not client.keys(f"{prefix}:lists:{versions[0]}:*")


def test_two_api_processes_share_lists_and_fresh_events(home, redis_url, prefix):
    config = make_config(home, store=redis_url, redis_prefix=prefix)
    artifact = ModelRegistry(home).open()
    user = artifact.model.users_.id(4)
    with TestClient(create_app(make_config(home))) as local:
        expected = local.get(f"/v1/users/{user}/recommendations", params={"k": 7}).json()
    with TestClient(create_app(config)) as first, TestClient(create_app(config)) as second:
        answer = first.get(f"/v1/users/{user}/recommendations", params={"k": 7}).json()
        assert answer.pop("recommendation_id") != expected.pop("recommendation_id")  # each answer its own
        assert answer == expected
        assert second.get("/v1/items/i3/similar").json()["source"] == "factors"
        assert second.get("/v1/users/roamer/recommendations").json()["source"] == "popular"
        batch = [
            {"event_id": f"r{j}", "user_id": "roamer", "item_id": f"i{j}", "event_type": "like",
             "timestamp": "2025-06-01T00:00:00Z"}
            for j in range(1, 4)
        ]  # fmt: skip
        assert first.post("/v1/events", json=batch, headers=AUTH).json()["accepted"] == 3
        answer = second.get("/v1/users/roamer/recommendations", params={"k": 5}).json()
        assert answer["source"] == "foldin"
        assert not {e["item_id"] for e in answer["items"]} & {"i1", "i2", "i3"}
        assert first.post("/v1/events", json=batch, headers=AUTH).json()["duplicates"] == 3
    fresh = redis.Redis.from_url(redis_url).lrange(f"{prefix}:fresh:roamer", 0, -1)
    assert len(fresh) == 6  # a repost is stored twice in the list, counted once when read
    assert redis.Redis.from_url(redis_url).ttl(f"{prefix}:fresh:roamer") > 0


def test_unreachable_redis_answers_503_not_500(home, prefix):
    url = f"redis://127.0.0.1:{free_port()}/0"
    with TestClient(create_app(make_config(home, store=url, redis_prefix=prefix))) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "Redis" in ready.json()["reason"]
        assert client.get("/v1/users/u1/recommendations").status_code == 503


def test_redis_going_away_while_serving_degrades_to_popular(home, prefix, caplog, monkeypatch):
    monkeypatch.setattr(answers, "_warned", [0.0])
    with redis_server() as url:
        client = TestClient(create_app(make_config(home, store=url, redis_prefix=prefix)))
        client.__enter__()
        assert client.get("/v1/users/u1/recommendations").json()["source"] == "precomputed"
    try:
        for path in (
            "/v1/users/u1/recommendations",
            "/v1/users/ghost/recommendations",
            "/v1/items/i1/similar",
        ):
            response = client.get(path)
            assert response.status_code == 200 and response.json()["source"] == "popular"
        assert caplog.text.count("answering from the popular list meanwhile") == 1  # once, not per request
        assert 'recforge_fallbacks_total{reason="store_unavailable"} 2.0' in client.get("/metrics").text
        event = {"user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": "2025-06-01T00:00:00Z"}
        response = client.post("/v1/events", json=[event], headers=AUTH)
        assert response.status_code == 202 and response.json()["accepted"] == 1  # durable on disk
    finally:
        client.__exit__(None, None, None)


def test_cli_load_and_publish_into_redis(home, redis_url, prefix, capsys, monkeypatch):
    monkeypatch.setenv("RECFORGE_SERVING__REDIS_PREFIX", prefix)
    registry = ModelRegistry(home)
    current = registry.current()
    assert main(["--home", str(home), "models", "load", "--store", redis_url]) == 0
    assert "loaded the lists of" in capsys.readouterr().out
    assert RedisLists(redis_url, prefix, keep_versions=3).ready(current)
    candidate = publish_version(home, make_config(home), Popular(), publish=False)
    assert main(["--home", str(home), "models", "publish", candidate, "--store", redis_url]) == 0
    assert RedisLists(redis_url, prefix, keep_versions=3).ready(candidate) and registry.current() == candidate
    assert main(["--home", str(home), "models", "load", "--store", "mmap"]) == 2
