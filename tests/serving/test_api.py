"""The API through FastAPI's TestClient, against a real artifact built from generated events."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np
import pytest
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.trace import NoOpTracer, TracerProvider

from recforge.artifacts import ModelRegistry
from recforge.data.store import EventStore
from recforge.serving import create_app
from recforge.serving import security as security_module
from tests.serving.conftest import API_KEY, make_config

AUTH = {"Authorization": f"Bearer {API_KEY}"}
FRESH_TIME = "2025-06-01T12:00:00Z"  # after the generated events (2024-01-01 + 90 days)


@pytest.fixture
def client(home):
    with TestClient(create_app(make_config(home))) as client:
        yield client


@pytest.fixture
def artifact(home):
    return ModelRegistry(home).open()


def names(artifact, indices):
    return [artifact.model.items_.id(int(i)) for i in indices if i >= 0]


def events(user, items, *, when=FRESH_TIME, event_type="view", start=0):
    return [
        {
            "event_id": f"{user}-{start + j}",
            "user_id": user,
            "item_id": item,
            "event_type": event_type,
            "timestamp": when,
        }
        for j, item in enumerate(items)
    ]


def items_of(response):
    return [entry["item_id"] for entry in response.json()["items"]]


# recommendations ---------------------------------------------------------------------------
def test_known_user_gets_the_precomputed_list(client, artifact):
    user = artifact.model.users_.id(7)
    response = client.get(f"/v1/users/{user}/recommendations", params={"k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == user and body["model_version"] == artifact.version
    assert body["source"] == "precomputed"
    assert items_of(response) == names(artifact, artifact.user_ids[7][:5])
    assert [e["score"] for e in body["items"]] == pytest.approx(artifact.user_scores[7][:5].tolist())


def test_exclude_skips_items_and_keeps_k(client, artifact):
    user = artifact.model.users_.id(3)
    top = names(artifact, artifact.user_ids[3][:6])
    response = client.get(
        f"/v1/users/{user}/recommendations", params={"k": 4, "exclude": f"{top[0]},{top[2]},nope"}
    )
    assert response.status_code == 200
    assert items_of(response) == [top[1], top[3], top[4], top[5]]


def test_k_defaults_and_is_capped(home, artifact):
    config = make_config(home, k_default=3, k_max=7)
    user = artifact.model.users_.id(0)
    with TestClient(create_app(config)) as client:
        assert len(items_of(client.get(f"/v1/users/{user}/recommendations"))) == 3
        assert len(items_of(client.get(f"/v1/users/{user}/recommendations", params={"k": 10**9}))) == 7
        assert len(items_of(client.get("/v1/items/i1/similar", params={"k": 500}))) == 7


def test_unknown_user_gets_time_decayed_popular_items(client, artifact):
    response = client.get("/v1/users/stranger/recommendations", params={"k": 5, "exclude": "nobody"})
    assert response.json()["source"] == "popular"
    assert items_of(response) == names(artifact, artifact.popular_ids[:5])
    first = names(artifact, artifact.popular_ids[:1])[0]
    response = client.get("/v1/users/stranger/recommendations", params={"k": 5, "exclude": first})
    assert items_of(response) == names(artifact, artifact.popular_ids[1:6])


def test_popular_scores_are_normalised_to_the_most_popular_item(client, artifact):
    scores = [
        e["score"] for e in client.get("/v1/users/stranger/recommendations", params={"k": 5}).json()["items"]
    ]
    mass = np.asarray(artifact.popular_scores[:5], dtype=np.float64)
    assert scores[0] == 1.0 and all(0.0 <= s <= 1.0 for s in scores)
    np.testing.assert_allclose(scores, mass / mass[0], rtol=1e-6)
    similar = client.get("/v1/items/no-such-item/similar", params={"k": 3}).json()
    assert similar["source"] == "popular" and similar["items"][0]["score"] == 1.0


def test_new_user_with_fresh_events_gets_fold_in_without_the_seen_items(client, artifact):
    posted = ["i1", "i2", "i3", "i4"]
    assert client.post("/v1/events", json=events("newcomer", posted), headers=AUTH).status_code == 202
    response = client.get("/v1/users/newcomer/recommendations", params={"k": 8, "exclude": "i5"})
    body = response.json()
    assert body["source"] == "foldin"
    got = items_of(response)
    assert len(got) == 8 and not set(got) & {*posted, "i5"}
    history = artifact.model.items_.lookup(posted)
    ids, scores = artifact.model.recommend_for_history(history, np.ones(4), k=8, exclude=["i5"])
    assert got == names(artifact, ids)
    assert [e["score"] for e in body["items"]] == pytest.approx(scores.tolist(), rel=1e-5)


def test_known_user_with_fresh_events_folds_in_old_and_new_items(client, artifact):
    model = artifact.model
    user = model.users_.id(11)
    trained = model.seen_[11].indices
    unseen = [model.items_.id(i) for i in range(len(model.items_)) if i not in set(trained)][:3]
    client.post("/v1/events", json=events(user, unseen, event_type="purchase"), headers=AUTH)
    response = client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
    assert response.json()["source"] == "foldin"
    got = items_of(response)
    assert not set(got) & (set(unseen) | set(names(artifact, trained)))
    weight = make_config(artifact.path).weighting.weights["purchase"]
    history = np.concatenate([trained, model.items_.lookup(unseen)])
    values = np.concatenate([model.seen_[11].data, np.full(3, weight)])  # the trained r, then the fresh
    ids, _ = model.recommend_for_history(history, values, k=10)
    assert got == names(artifact, ids)


def test_events_older_than_the_model_are_stored_but_not_fresh(client, home):
    old = events("oldtimer", ["i1", "i2"], when="2023-06-01T00:00:00Z")
    response = client.post("/v1/events", json=old, headers=AUTH)
    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert client.get("/v1/users/oldtimer/recommendations").json()["source"] == "popular"
    stored = EventStore(home).scan(["event_id"]).column("event_id").to_pylist()
    assert {"oldtimer-0", "oldtimer-1"} <= set(stored)


def test_fresh_events_on_unknown_items_leave_the_answer_alone(client, artifact):
    user = artifact.model.users_.id(2)
    client.post("/v1/events", json=events(user, ["brand-new-item"]), headers=AUTH)
    response = client.get(f"/v1/users/{user}/recommendations", params={"k": 3})
    assert response.json()["source"] == "precomputed"
    client.post("/v1/events", json=events("nobody-yet", ["brand-new-item"]), headers=AUTH)
    assert client.get("/v1/users/nobody-yet/recommendations").json()["source"] == "popular"


# similar items -----------------------------------------------------------------------------
def test_similar_items_of_a_known_item(client, artifact):
    item = artifact.model.items_.id(5)
    response = client.get(f"/v1/items/{item}/similar", params={"k": 6})
    body = response.json()
    assert response.status_code == 200 and body["source"] == "factors" and body["item_id"] == item
    assert items_of(response) == names(artifact, artifact.item_ids[5][:6])
    assert item not in items_of(response)


def test_similar_items_of_an_unknown_item_are_popular(client, artifact):
    response = client.get("/v1/items/never-seen/similar", params={"k": 4})
    assert response.json()["source"] == "popular"
    assert items_of(response) == names(artifact, artifact.popular_ids[:4])


# model, health, metrics --------------------------------------------------------------------
def test_model_health_and_readiness(client, artifact):
    body = client.get("/v1/model").json()
    assert body["version"] == artifact.version and body["model"] == "toyfactors"
    assert body["data_window"]["last"] and body["metrics"] == {"ndcg@10": 0.1} and "checksums" not in body
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {
        "status": "ready",
        "model_version": artifact.version,
        "served_version": artifact.version,
        "published_version": artifact.version,
    }
    assert (body["served_version"], body["published_version"]) == (artifact.version,) * 2


def test_not_ready_without_a_published_model(tmp_path):
    with TestClient(create_app(make_config(tmp_path))) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "not ready"
        response = client.get("/v1/users/u1/recommendations")
        assert response.status_code == 503 and "no model" in response.json()["detail"]
        assert client.post("/v1/events", json=events("u1", ["i1"]), headers=AUTH).status_code == 202


def test_metrics_count_routes_sources_and_events(client, artifact):
    client.get(f"/v1/users/{artifact.model.users_.id(0)}/recommendations")
    client.get("/v1/users/ghost/recommendations")
    client.get("/v1/users/ghost/recommendations", params={"k": "x"})
    client.post("/v1/events", json=[*events("fresh", ["i1"]), {"user_id": "bad"}], headers=AUTH)
    client.get("/v1/users/fresh/recommendations")
    client.get("/no/such/route")
    text = client.get("/metrics").text
    route = 'route="/v1/users/{user_id}/recommendations"'
    assert f'recforge_http_requests_total{{method="GET",{route},status="200"}} 3.0' in text
    assert f'recforge_http_requests_total{{method="GET",{route},status="422"}} 1.0' in text
    assert f'recforge_http_request_duration_seconds_count{{method="GET",{route},status="200"}} 3.0' in text
    assert 'route="unmatched",status="404"' in text
    assert f'recforge_model_info{{model="toyfactors",version="{artifact.version}"}} 1.0' in text
    assert 'recforge_recommendations_total{endpoint="users",source="precomputed"} 1.0' in text
    assert 'recforge_fallbacks_total{reason="unknown_user"} 1.0' in text
    assert "recforge_foldins_total 1.0" in text
    assert "recforge_events_accepted_total 1.0" in text and "recforge_events_rejected_total 1.0" in text
    assert 'recforge_model_reloads_total{result="loaded"} 1.0' in text


# events ------------------------------------------------------------------------------------
def test_events_are_durable_when_answered_and_bad_ones_are_listed(client, home):
    batch = events("writer", ["i1", "i2", "i3"])
    batch.insert(1, {"user_id": "writer", "item_id": "i9", "event_type": "teleport", "timestamp": FRESH_TIME})
    batch.append({"user_id": "writer", "item_id": "i9", "event_type": "view", "timestamp": "yesterday"})
    batch.append("not an object")
    # issue 14: one event from the future, a value that would overflow float32 sums, a NUL in an id
    batch.append({"user_id": "writer", "item_id": "i9", "event_type": "view", "timestamp": "9999-12-31"})
    batch.append({"user_id": "writer", "item_id": "i9", "event_type": "view", "timestamp": 1, "value": 1e39})
    batch.append({"user_id": "wri\u0000ter", "item_id": "i9", "event_type": "view", "timestamp": FRESH_TIME})
    response = client.post("/v1/events", json=batch, headers=AUTH)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 3 and body["duplicates"] == 0
    assert [r["index"] for r in body["rejected"]] == [1, 4, 5, 6, 7, 8]
    assert "unknown event_type 'teleport'" in body["rejected"][0]["reason"]
    assert "unparsable timestamp" in body["rejected"][1]["reason"]
    assert body["rejected"][2]["reason"] == "not a JSON object"
    assert body["rejected"][3]["reason"] == (
        "timestamp '9999-12-31' is more than data.max_future_seconds (300 s) in the future"
    )
    assert body["rejected"][4]["reason"] == "value 1e+39 is larger than data.max_value 1e+06"
    assert body["rejected"][5]["reason"] == "user_id holds a control character"
    stored = set(EventStore(home).scan(["event_id"]).column("event_id").to_pylist())  # another reader
    assert {"writer-0", "writer-1", "writer-2"} <= stored
    assert list((home / "quarantine").glob("http.*.jsonl"))


def test_reposted_events_are_duplicates(client):
    batch = events("again", ["i1", "i2"])
    assert client.post("/v1/events", json=batch, headers=AUTH).json()["accepted"] == 2
    assert client.post("/v1/events", json=batch, headers=AUTH).json() == {
        "accepted": 0,
        "duplicates": 2,
        "rejected": [],
    }


def test_ndjson_bodies_with_a_broken_line(client):
    lines = [
        '{"user_id": "nd", "item_id": "i1", "event_type": "view", "timestamp": 1748779200}',
        "{broken",
        "",
        '{"user_id": "nd", "item_id": "i2", "event_type": "like", "timestamp": "2025-06-01"}',
    ]
    response = client.post(
        "/v1/events", content="\n".join(lines), headers={**AUTH, "Content-Type": "application/x-ndjson"}
    )
    body = response.json()
    assert response.status_code == 202 and body["accepted"] == 2
    assert body["rejected"][0]["index"] == 1 and body["rejected"][0]["reason"].startswith("invalid JSON")
    for empty in (b"", b"  \n ", b"[]"):  # issue 14: an empty body answered 202
        response = client.post("/v1/events", content=empty, headers=AUTH)
        assert response.status_code == 422 and "holds no events" in response.json()["detail"]


def test_broken_json_array_is_400(client):
    response = client.post("/v1/events", content="[{]", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]


# security and limits -----------------------------------------------------------------------
def test_event_intake_needs_a_valid_key(client):
    batch = events("sneaky", ["i1"])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"}):
        response = client.post("/v1/events", json=batch, headers=headers)
        assert response.status_code == 401 and "API key" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/events", json=batch, headers=AUTH).status_code == 202
    assert (
        client.post("/v1/events", json=batch, headers={"Authorization": f"bearer {API_KEY}"}).status_code
        == 202
    )


def test_no_configured_keys_disables_intake(home):
    config = make_config(home, api_keys=[])
    with TestClient(create_app(config)) as client:
        response = client.post("/v1/events", json=events("x", ["i1"]), headers=AUTH)
        assert response.status_code == 403 and "no API keys" in response.json()["detail"]


def test_keys_from_the_environment_and_reads_behind_auth(home):
    from recforge.config import load_config

    config = load_config(
        environ={"RECFORGE_API_KEYS": "k-one, k-two"},
        overrides={"home": str(home), "serving": {"auth_reads": True}},
    )
    with TestClient(create_app(config)) as client:
        assert client.get("/v1/users/u1/recommendations").status_code == 401
        assert client.get("/v1/items/i1/similar").status_code == 401
        assert client.get("/v1/model").status_code == 401
        ok = {"Authorization": "Bearer k-two"}
        assert client.get("/v1/users/u1/recommendations", headers=ok).status_code == 200
        assert client.post("/v1/events", json=events("e", ["i1"]), headers=ok).status_code == 202
        assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200


def test_keys_are_compared_in_constant_time_against_every_key(monkeypatch):
    calls = []
    real = security_module.hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(security_module.hmac, "compare_digest", spy)
    keys = security_module.ApiKeys(["first-key", "second", "a-much-longer-third-key"])
    assert keys.check("first-key")  # matches the first key, still compares with all three
    assert calls == [(32, 32)] * 3  # fixed-length digests: the time does not depend on the key
    calls.clear()
    assert not keys.check("first-kez") and not keys.check("") and len(calls) == 6
    assert "first-key" not in repr(keys)


def test_keys_never_reach_logs_or_answers(home, caplog):
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(make_config(home))) as client:
        wrong = "wrong-secret-value-42"
        client.post("/v1/events", json=events("a", ["i1"]), headers={"Authorization": f"Bearer {wrong}"})
        ok = client.post("/v1/events", json=events("a", ["i1"]), headers=AUTH)
        client.get("/v1/users/a/recommendations", headers=AUTH)
    assert ok.status_code == 202 and API_KEY not in ok.text
    assert API_KEY not in caplog.text and wrong not in caplog.text


def test_body_and_event_count_limits(home):
    config = make_config(home, max_body_bytes=2_000, max_events_per_request=3)
    with TestClient(create_app(config)) as client:
        response = client.post("/v1/events", json=events("big", [f"i{j}" for j in range(40)]), headers=AUTH)
        assert response.status_code == 413 and "at most 2000" in response.json()["detail"]

        def chunks():  # no Content-Length: the limit is enforced while reading
            for _ in range(10):
                yield b" " * 500

        response = client.post("/v1/events", content=chunks(), headers=AUTH)
        assert response.status_code == 413 and "larger than 2000" in response.json()["detail"]
        response = client.post("/v1/events", json=events("many", ["i1", "i2", "i3", "i4"]), headers=AUTH)
        assert response.status_code == 413 and "at most 3" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/v1/users/u1/recommendations", {"k": 0}, "query.k: Input should be greater than or equal to 1"),
        ("/v1/users/u1/recommendations", {"k": "ten"}, "query.k: Input should be a valid integer"),
        ("/v1/users/u1/recommendations", {"k": "1.5"}, "query.k"),
        ("/v1/items/i1/similar", {"k": -3}, "query.k"),
        ("/v1/items/i1/similar", {"k": "9" * 30}, "query.k: Input should be a valid integer"),
        (
            "/v1/users/u1/recommendations",
            {"explain": 21},
            "query.explain: Input should be less than or equal to 20",
        ),
        ("/v1/items/i1/similar", {"user_id": "u" * 300}, "user_id is longer than 256 characters"),
        ("/v1/users/" + "u" * 300 + "/recommendations", {}, "user_id is longer than 256 characters"),
        ("/v1/items/" + "i" * 257 + "/similar", {}, "item_id is longer than 256 characters"),
        ("/v1/users/u1/recommendations", {"exclude": ",".join(["i1"] * 1001)}, "at most 1000"),
        ("/v1/users/u1/recommendations", {"exclude": "x" * 300}, "longer than 256"),
    ],
)
def test_bad_parameters_are_422_with_a_message(client, path, params, message):
    response = client.get(path, params=params)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_the_openapi_document_lists_the_parameters_the_routes_read_themselves(client):
    paths = client.get("/openapi.json").json()["paths"]

    def names(path: str) -> list[str]:
        return sorted(parameter["name"] for parameter in paths[path]["get"]["parameters"])

    assert names("/v1/users/{user_id}/recommendations") == sorted(
        ["user_id", "k", "exclude", "category", "fields", "explain"]
    )
    assert names("/v1/items/{item_id}/similar") == sorted(
        ["item_id", "k", "exclude", "category", "fields", "user_id"]
    )


def test_odd_ids_are_answered(client):
    for user in ["%F0%9F%8E%89", "a%20b", "%00", "%FF%FE", "..", "u1%2Fextra"]:
        response = client.get(f"/v1/users/{user}/recommendations")
        # ".." is resolved by the client to GET /v1/recommendations, the POST-only batch route
        assert response.status_code in ((200, 404, 405) if user == ".." else (200, 404)), (
            user,
            response.text,
        )
    response = client.post(
        "/v1/events",
        json=[{"user_id": "🎉", "item_id": "i1", "event_type": "view", "timestamp": FRESH_TIME, "value": 3}],
        headers=AUTH,
    )
    assert response.status_code == 202 and response.json()["accepted"] == 1
    assert client.get("/v1/users/%F0%9F%8E%89/recommendations").json()["source"] == "foldin"


def test_fresh_cutoff_comes_from_the_data_window(client, artifact):
    last = datetime.fromisoformat(artifact.manifest["data_window"]["last"].replace("Z", "+00:00"))
    just_after = (last.replace(tzinfo=UTC)).timestamp() + 1
    client.post("/v1/events", json=events("edge", ["i1"], when=just_after), headers=AUTH)
    client.post("/v1/events", json=events("edge2", ["i1"], when=last.timestamp()), headers=AUTH)
    assert client.get("/v1/users/edge/recommendations").json()["source"] == "foldin"
    assert client.get("/v1/users/edge2/recommendations").json()["source"] == "popular"


def test_a_failing_fold_in_falls_back_instead_of_failing(client, artifact, monkeypatch, caplog):
    served = client.app.state.serving.holder.current

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(served.model, "_fold_in", broken)  # under fold_in and recommend_for_history
    client.post("/v1/events", json=events("unlucky", ["i1"]), headers=AUTH)
    response = client.get("/v1/users/unlucky/recommendations")
    assert response.status_code == 200 and response.json()["source"] == "popular"
    assert "fold-in failed" in caplog.text


# batch -------------------------------------------------------------------------------------
def test_batch_answers_each_user_as_the_single_route_does(client, artifact):
    fresh = events("batch-newcomer", ["i1", "i2", "i3"])
    assert client.post("/v1/events", json=fresh, headers=AUTH).status_code == 202
    known = [artifact.model.users_.id(i) for i in (3, 7, 11)]
    users = [known[0], "stranger", known[1], "batch-newcomer", known[2]]
    params = {"k": 4, "exclude": "i5"}
    singles = [client.get(f"/v1/users/{u}/recommendations", params=params).json() for u in users]
    response = client.post("/v1/recommendations", json={"users": users, "k": 4, "exclude": ["i5"]})
    assert response.status_code == 200
    batch = response.json()
    assert batch["model_version"] == artifact.version
    # each answer has a recommendation_id of its own (issue 18); the rest is the same
    assert all(len(r.pop("recommendation_id")) > 0 for r in [*batch["results"], *singles])
    assert batch["results"] == singles
    assert [r["source"] for r in batch["results"]] == [
        "precomputed",
        "popular",
        "precomputed",
        "foldin",
        "precomputed",
    ]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"users": []}, 422, "users"),
        ({"users": ["u1"] * 101}, 413, "at most 100"),
        ({"users": ["u1"], "k": 0}, 422, "k"),
        ({"users": ["x" * 300]}, 422, "user_id is longer than"),
        ({"users": "u1"}, 422, "users"),
        ({"users": ["u1"], "colour": "red"}, 422, "colour"),
    ],
)
def test_batch_rejects_bad_requests_with_a_message(client, body, status, message):
    response = client.post("/v1/recommendations", json=body)
    assert response.status_code == status and message in response.text


def test_an_ease_version_is_served_like_any_model(home):
    """EASE (issue 16) through the whole path: precomputed lists, similar items from B's rows
    (source cooccurrence), and fold-in of fresh events as a product with B."""
    from recforge import EASE
    from tests.serving.conftest import publish_version

    config = make_config(home)
    version = publish_version(home, config, EASE(regularization=50.0))
    artifact = ModelRegistry(home).open(version)
    assert artifact.model.name == "ease"
    with TestClient(create_app(config)) as client:
        user = artifact.model.users_.id(5)
        response = client.get(f"/v1/users/{user}/recommendations", params={"k": 5})
        assert response.json()["model_version"] == version
        assert items_of(response) == names(artifact, artifact.user_ids[5][:5])
        similar = client.get("/v1/items/i1/similar", params={"k": 4}).json()
        assert similar["source"] == "cooccurrence"
        expected, _ = artifact.model.similar_items("i1", k=4)
        assert [e["item_id"] for e in similar["items"]] == list(expected)
        posted = ["i1", "i2", "i3"]
        client.post("/v1/events", json=events("ease-newcomer", posted), headers=AUTH)
        response = client.get("/v1/users/ease-newcomer/recommendations", params={"k": 6})
        assert response.json()["source"] == "foldin"
        history = artifact.model.items_.lookup(posted)
        ids, _ = artifact.model.recommend_for_history(history, np.ones(3), k=6)
        assert items_of(response) == names(artifact, ids)


class _RecordingTracerProvider(TracerProvider):
    """A configured provider (so FastAPI's native telemetry is on) that notes each tracer asked of it."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get_tracer(self, instrumenting_module_name, *args, **kwargs):
        self.asked.append(instrumenting_module_name)
        return NoOpTracer()


@pytest.mark.parametrize("enabled", [False, True])
def test_fastapi_opentelemetry_only_when_configured(home, monkeypatch, enabled):
    """With a global tracer provider configured, requests are traced only under
    ``[serving] opentelemetry = true``; by default FastAPI never asks the provider for a tracer."""
    provider = _RecordingTracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    with TestClient(create_app(make_config(home, opentelemetry=enabled))) as client:
        assert client.get("/v1/users/u1/recommendations").status_code == 200
    assert bool(provider.asked) is enabled
