"""``GET /v1/users/{id}/recommendations?explain=n``: each item with the history items that
contributed most, as the model's own ``explain_history`` says, for precomputed and fold-in
answers, through the real app."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from recforge import ALS
from recforge.artifacts import ModelRegistry
from recforge.serving import create_app
from tests.serving.conftest import API_KEY, make_config, publish_version

AUTH = {"Authorization": f"Bearer {API_KEY}"}
FRESH_TIME = "2025-06-01T12:00:00Z"  # after the generated events


@pytest.fixture
def als_home(home):
    publish_version(home, make_config(home), ALS(factors=8, iterations=4, random_state=0))
    return home


def recommend(client, user, **params):
    response = client.get(f"/v1/users/{user}/recommendations", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_precomputed_answer_explained_by_the_training_history(als_home):
    model = ModelRegistry(als_home).open().model
    user = model.users_.id(5)
    history = {model.items_.id(int(i)) for i in model.seen_[5].indices}
    with TestClient(create_app(make_config(als_home))) as client:
        plain = recommend(client, user, k=4)
        body = recommend(client, user, k=4, explain=3)
    assert body["source"] == "precomputed"
    assert [e["item_id"] for e in body["items"]] == [e["item_id"] for e in plain["items"]]
    assert all("explanation" not in e for e in plain["items"])
    for entry in body["items"]:
        expected = model.explain(user, entry["item_id"], n=3)
        shown = entry["explanation"]
        assert [c["item_id"] for c in shown] == list(expected.items)
        assert {c["item_id"] for c in shown} <= history
        assert [c["contribution"] for c in shown] == pytest.approx(expected.contributions.tolist())
        assert [c["share"] for c in shown] == pytest.approx(expected.shares.tolist())
        # the fold-in of the training history is the model's score, up to the last half-step
        assert expected.score == pytest.approx(entry["score"], rel=0.2, abs=1e-3)


def test_fold_in_answer_explained_exactly_by_history_and_fresh_events(als_home):
    model = ModelRegistry(als_home).open().model
    fresh = [model.items_.id(i) for i in (1, 2, 3)]
    user = "a-new-user"
    events = [
        {"event_id": f"e{j}", "user_id": user, "item_id": item, "event_type": "view", "timestamp": FRESH_TIME}
        for j, item in enumerate(fresh)
    ]
    with TestClient(create_app(make_config(als_home))) as client:
        assert client.post("/v1/events", json=events, headers=AUTH).status_code == 202
        body = recommend(client, user, k=5, explain=20)
    assert body["source"] == "foldin"
    for entry in body["items"]:
        shown = entry["explanation"]
        assert {c["item_id"] for c in shown} == set(fresh)  # the whole history: 3 items
        assert sum(c["contribution"] for c in shown) == pytest.approx(entry["score"], rel=1e-3, abs=1e-5)
        assert sum(c["share"] for c in shown) == pytest.approx(1.0, abs=1e-6)


def test_unknown_users_and_models_that_cannot_explain_get_empty_explanations(home, als_home):
    with TestClient(create_app(make_config(als_home))) as client:
        body = recommend(client, "nobody-at-all", k=3, explain=2)
        assert body["source"] == "popular"
        assert [e["explanation"] for e in body["items"]] == [[], [], []]
        for bad in ("-1", "21", "x"):
            response = client.get("/v1/users/u/recommendations", params={"explain": bad})
            assert response.status_code == 422 and "explain" in response.json()["detail"]


def test_a_factor_model_without_explanations_answers_with_empty_lists(home):
    model = ModelRegistry(home).open().model  # ToyFactors: no explain
    user = model.users_.id(0)
    with TestClient(create_app(make_config(home))) as client:
        body = recommend(client, user, k=3, explain=3)
    assert body["source"] == "precomputed" and [e["explanation"] for e in body["items"]] == [[], [], []]
