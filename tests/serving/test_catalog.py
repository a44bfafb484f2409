"""The catalog in every answer (issue 15): exact category filters, sold-out items gone at once,
new arrivals, item details, and the catalog routes, against a real artifact and store."""

from __future__ import annotations

import shutil
import time

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from recforge.artifacts import ModelRegistry
from recforge.catalog import Catalog, CatalogStore
from recforge.catalog.synthetic import generate_catalog
from recforge.data.build import build_interactions
from recforge.data.generate import generate_events
from recforge.data.store import EventStore
from recforge.precompute import precompute
from recforge.serving import create_app
from recforge.serving.model import load_served_model
from recforge.serving.stores import MmapListStore
from tests.serving.brute import brute_force
from tests.serving.conftest import API_KEY, make_config
from tests.serving.factors import ToyFactors

AUTH = {"Authorization": f"Bearer {API_KEY}"}
FRESH = "2025-06-01T12:00:00Z"
CATEGORIES = 6


@pytest.fixture(scope="module")
def catalog_template(tmp_path_factory):
    home = tmp_path_factory.mktemp("catalog-template")
    EventStore(home).append(
        generate_events(users=400, items=150, events=20_000, seed=5, categories=CATEGORIES)
    )
    table = generate_catalog(150, seed=5, categories=CATEGORIES, new_items=12, sold_out=0.1)
    CatalogStore(home).upsert(Catalog.from_records(table.to_pylist()).patches())
    config = make_config(home)
    interactions = build_interactions(EventStore(home), config)
    model = ToyFactors(factors=8).fit(interactions, catalog=Catalog.load(home))
    lists = precompute(model, interactions, k_users=20, k_items=15, k_popular=30)
    info = interactions.info
    registry = ModelRegistry(home)
    version = registry.create(model, lists, data_window={"first": info["first"], "last": info["last"]})
    registry.publish(version.version)
    return home


@pytest.fixture
def home(catalog_template, tmp_path):
    target = tmp_path / "home"
    shutil.copytree(catalog_template, target)
    return target


@pytest.fixture
def client(home):
    with TestClient(create_app(make_config(home))) as client:
        yield client


def served_of(client):
    served = client.app.state.serving.holder.current
    return served, served.catalog.state


def ids_of(response):
    assert response.status_code == 200, response.text
    return [entry["item_id"] for entry in response.json()["items"]]


def test_filtered_answers_equal_brute_force(client):
    """Precomputed, fold-in and unknown users, random category sets: the served answer is the
    brute-force top-k over the available items of those categories (seen items excluded, ties by
    lower index, the cold cap applied)."""
    served, state = served_of(client)
    rng = np.random.default_rng(0)
    names = sorted(state.members)
    folded = [f"f{j}" for j in range(10)]
    for user in folded:
        items = served.items.names(rng.choice(state.n_model, 3, replace=False))
        body = [
            {
                "event_id": f"{user}-{n}",
                "user_id": user,
                "item_id": item,
                "event_type": "view",
                "timestamp": FRESH,
            }
            for n, item in enumerate(items)
        ]
        assert client.post("/v1/events", json=body, headers=AUTH).status_code == 202
    sources = set()
    for trial in range(150):
        kind = trial % 3
        categories = tuple(sorted(rng.choice(names, rng.integers(1, 3), replace=False).tolist()))
        k = int(rng.integers(1, 15))
        cap = max(1, int(k * 0.3))
        if kind == 0:
            user = int(rng.integers(len(served.users)))
            name, expected = (
                served.model.users_.id(user),
                brute_force(served, state, k, cap, categories, user=user),
            )
        elif kind == 1:
            name = folded[trial % len(folded)]
            fresh = client.app.state.serving.fresh.get(name, served.cutoff_us)
            history = served.items.lookup([e.item_id for e in fresh])
            expected = brute_force(
                served, state, k, cap, categories, history=(history, np.ones(len(history), np.float32))
            )
        else:
            name, expected = f"stranger{trial}", brute_force(served, state, k, cap, categories)
        response = client.get(
            f"/v1/users/{name}/recommendations", params={"k": k, "category": ",".join(categories)}
        )
        sources.add(response.json()["source"])
        assert ids_of(response) == state.names(expected, served.items), (trial, name, categories, k)
    assert sources == {"precomputed", "foldin", "popular"}


def test_a_sold_out_item_is_in_no_answer_once_acknowledged(client):
    served, state = served_of(client)
    user = served.model.users_.id(3)
    top = ids_of(client.get(f"/v1/users/{user}/recommendations", params={"k": 5}))[0]
    popular = ids_of(client.get("/v1/users/nobody/recommendations", params={"k": 5}))[0]
    neighbour = ids_of(client.get(f"/v1/items/{top}/similar", params={"k": 1}))[0]
    for item in (top, popular):
        response = client.patch(f"/v1/items/{item}", json={"available": False}, headers=AUTH)
        assert response.status_code == 200 and response.json()["available"] is False
    gone = {top, popular}
    category = orjson.loads(client.get(f"/v1/items/{top}").content)["categories"][0]
    client.post(
        "/v1/events",
        json=[{"user_id": "fresh-1", "item_id": neighbour, "event_type": "like", "timestamp": FRESH}],
        headers=AUTH,
    )
    answers = [
        client.get(f"/v1/users/{user}/recommendations", params={"k": 50}),
        client.get("/v1/users/nobody/recommendations", params={"k": 50}),
        client.get("/v1/users/fresh-1/recommendations", params={"k": 50}),
        client.get(f"/v1/items/{neighbour}/similar", params={"k": 50}),
        client.get(f"/v1/categories/{category}/popular", params={"k": 50}),
        client.get(f"/v1/categories/{category}/latest", params={"k": 50}),
        client.get(f"/v1/users/{user}/recommendations", params={"k": 50, "category": category}),
    ]
    assert [r.json()["source"] for r in answers[:3]] == ["precomputed", "popular", "foldin"]
    for response in answers:
        assert not gone & set(ids_of(response)), response.json()
    client.patch(f"/v1/items/{top}", json={"available": True}, headers=AUTH)
    assert ids_of(client.get(f"/v1/users/{user}/recommendations", params={"k": 5}))[0] == top


def test_another_process_sees_a_change_within_a_poll(home):
    """Two apps over one home (as two workers): a change written through one is in the other's
    answers after its next catalog poll."""
    config = make_config(home)
    config.catalog.poll_seconds = 0.05
    with TestClient(create_app(config)) as writer, TestClient(create_app(config)) as reader:
        served, _ = served_of(reader)
        top = ids_of(reader.get("/v1/users/nobody/recommendations", params={"k": 1}))[0]
        assert writer.patch(f"/v1/items/{top}", json={"available": False}, headers=AUTH).status_code == 200
        time.sleep(0.5)
        assert top not in ids_of(reader.get("/v1/users/nobody/recommendations", params={"k": 20}))


def test_new_arrivals_are_cold_and_capped(client):
    served, state = served_of(client)
    assert len(state.extra_names) == 0 and state.cold.sum() == 12  # the catalog's 12 items without events
    category = sorted(state.members)[0]
    for j in range(6):
        record = {"categories": [category], "attributes": {"title": f"New {j}", "price": 10 + j}}
        assert client.put(f"/v1/items/arrival{j}", json=record, headers=AUTH).status_code == 200
    served, state = served_of(client)
    assert state.extra_names == [f"arrival{j}" for j in range(6)] and state.extra_factors.shape[0] == 6
    user = served.model.users_.id(5)
    body = client.get(
        f"/v1/users/{user}/recommendations", params={"k": 10, "category": category, "fields": "title,price"}
    ).json()
    cold = [entry for entry in body["items"] if entry.get("cold")]
    assert 1 <= len(cold) <= 3  # max_cold_share 0.3 of k=10
    assert all(set(entry) == {"item_id", "score", "cold", "title", "price"} for entry in cold)
    latest = client.get(f"/v1/categories/{category}/latest", params={"k": 3}).json()
    assert [entry["item_id"] for entry in latest["items"]] == ["arrival5", "arrival4", "arrival3"]
    similar = client.get("/v1/items/arrival0/similar", params={"k": 5})
    assert similar.json()["source"] == "factors" and len(ids_of(similar)) == 5
    expected = brute_force(served, state, 10, 3, (category,), user=5)
    assert [entry["item_id"] for entry in body["items"]] == state.names(expected, served.items)


def test_item_records_over_http(client, home):
    record = {
        "categories": ["tech"],
        "available": True,
        "created_at": "2024-03-01T00:00:00Z",
        "attributes": {"title": "Phone", "price": 300},
    }
    assert client.put("/v1/items/p1", json=record).status_code == 401
    put = client.put("/v1/items/p1", json=record, headers=AUTH)
    assert put.status_code == 200 and put.json() == {"item_id": "p1", **record}
    patched = client.patch("/v1/items/p1", json={"attributes": {"price": 250, "title": None}}, headers=AUTH)
    assert patched.json()["attributes"] == {"price": 250} and patched.json()["categories"] == ["tech"]
    assert client.get("/v1/items/p1").json() == patched.json()
    assert client.get("/v1/items/nope").status_code == 404
    bad = client.patch("/v1/items/p1", json={"available": "perhaps"}, headers=AUTH)
    assert bad.status_code == 422 and "available must be true or false" in bad.json()["detail"]
    assert client.put("/v1/items/p1", json={"item_id": "p2"}, headers=AUTH).status_code == 422
    assert client.patch("/v1/items/p1", content=b"{", headers=AUTH).status_code == 400
    batch = [
        {"item_id": "b1", "categories": ["x"]},
        {"item_id": "b2", "available": 3},
        {"categories": ["y"]},
        "no",
    ]
    posted = client.post("/v1/items", json=batch, headers=AUTH)
    assert posted.status_code == 202
    assert posted.json()["accepted"] == 1 and [r["index"] for r in posted.json()["rejected"]] == [1, 2, 3]
    assert any(p.name.startswith("http-items") for p in (home / "quarantine").iterdir())
    ndjson = b'{"item_id": "b3"}\n{nope\n'
    posted = client.post(
        "/v1/items", content=ndjson, headers={**AUTH, "Content-Type": "application/x-ndjson"}
    )
    assert posted.json()["accepted"] == 1 and posted.json()["rejected"][0]["reason"].startswith(
        "invalid JSON"
    )
    too_many = [{"item_id": f"t{j}"} for j in range(10_001)]
    assert client.post("/v1/items", json=too_many, headers=AUTH).status_code == 413


def test_bad_filter_parameters_are_422_and_unknown_categories_empty_or_404(client):
    user = served_of(client)[0].model.users_.id(0)
    assert client.get(f"/v1/users/{user}/recommendations", params={"category": "a|b"}).status_code == 422
    assert client.get(f"/v1/users/{user}/recommendations", params={"category": ","}).status_code == 422
    assert client.get(f"/v1/users/{user}/recommendations", params={"fields": "score"}).status_code == 422
    assert ids_of(client.get(f"/v1/users/{user}/recommendations", params={"category": "nothing"})) == []
    assert client.get("/v1/categories/nothing/popular").status_code == 404
    assert client.get("/v1/categories/nothing/latest").status_code == 404


def _category_version(home, k_category=8):
    """Publish a version with per-user lists for every category."""
    from recforge.data.interactions import Interactions

    registry = ModelRegistry(home)
    artifact = registry.open()
    model = artifact.model
    eligibility = Catalog.load(home).eligibility(model.items_)
    lists = precompute(
        model,
        Interactions(model.seen_, model.users_, model.items_),
        k_users=20,
        k_items=15,
        k_popular=30,
        eligibility=eligibility,
        category_lists=CATEGORIES,
        k_category=k_category,
    )
    version = registry.create(model, lists, data_window=artifact.manifest["data_window"])
    registry.publish(version.version)
    return version.version


def test_category_lists_answer_single_category_requests_exactly(home, monkeypatch):
    _category_version(home)
    with TestClient(create_app(make_config(home))) as client:
        served, state = served_of(client)
        assert served.lists.categories == frozenset(state.members)
        calls = []
        exact = served.ranker.exact
        monkeypatch.setattr(served.ranker, "exact", lambda *a, **kw: calls.append(1) or exact(*a, **kw))
        rng = np.random.default_rng(3)
        for trial in range(80):
            user = int(rng.integers(len(served.users)))
            category = (sorted(state.members)[trial % CATEGORIES],)
            k = int(rng.integers(1, 9))
            response = client.get(
                f"/v1/users/{served.model.users_.id(user)}/recommendations",
                params={"k": k, "category": category[0]},
            )
            expected = brute_force(served, state, k, max(1, int(k * 0.3)), category, user=user)
            assert ids_of(response) == state.names(expected, served.items), (trial, user, category, k)
        assert len(calls) < 40  # most answers came from the category's own lists


@pytest.mark.redis
def test_category_lists_in_redis(home):
    from recforge.lists import RedisLists
    from recforge.serving.stores import open_redis_store
    from tests.serving.redis_server import redis_server

    version = _category_version(home)
    artifact = ModelRegistry(home).open(version)
    with redis_server() as url:
        store = open_redis_store(RedisLists(url, "cat", 2), artifact)
        assert store.categories == frozenset(artifact.categories)
        name = sorted(artifact.categories)[0]
        for user in (0, 7, 99):
            ids, scores = store.category(name, user, artifact.model.users_.id(user))
            np.testing.assert_array_equal(ids, artifact.categories[name][0][user])
            np.testing.assert_array_equal(scores, artifact.categories[name][1][user])
        with TestClient(create_app(make_config(home, store=url, redis_prefix="cat"))) as client:
            user = artifact.model.users_.id(3)
            answer = client.get(f"/v1/users/{user}/recommendations", params={"k": 5, "category": name}).json()
            assert answer["source"] == "precomputed" and len(answer["items"]) == 5


def test_a_model_without_factors_is_filtered_exactly_too(home):
    """ItemKNN: the filtered answers are the model's own ranking of the eligible items."""
    from recforge.data.interactions import Interactions
    from recforge.models import ItemKNN

    registry = ModelRegistry(home)
    data = build_interactions(EventStore(home), make_config(home))
    model = ItemKNN(neighbors=20).fit(data, catalog=Catalog.load(home))
    lists = precompute(
        model, Interactions(model.seen_, model.users_, model.items_), k_users=20, k_items=15, k_popular=30
    )
    version = registry.create(model, lists, data_window=registry.open().manifest["data_window"])
    registry.publish(version.version)
    config = make_config(home)
    config.catalog.max_cold_share = 1.0  # no cap: the model's ranking as it is
    with TestClient(create_app(config)) as client:
        served, state = served_of(client)
        assert served.version == version.version
        rng = np.random.default_rng(4)
        for trial in range(40):
            user = int(rng.integers(len(served.users)))
            category = sorted(state.members)[trial % CATEGORIES]
            eligible = state.eligible[category]
            k = int(rng.integers(1, 12))
            ids, _ = served.model.recommend(user, k, items=eligible[eligible < state.n_model])
            response = client.get(
                f"/v1/users/{served.model.users_.id(user)}/recommendations",
                params={"k": k, "category": category},
            )
            assert ids_of(response) == state.names(ids[ids >= 0], served.items), (trial, user, category, k)
        similar = client.get(
            f"/v1/items/{served.model.items_.id(1)}/similar", params={"k": 5, "category": category}
        )
        assert similar.json()["source"] == "cooccurrence" and set(ids_of(similar)) <= set(
            state.names(state.eligible[category], served.items)
        )


def test_a_model_loaded_outside_a_server_reads_its_catalog(home):
    """``load_served_model`` as the catalog benchmark calls it (no server): the store's
    categories and sold-out items are in the state at once. (The benchmark passed the store in
    the place of the impression log once an argument was added before it; the optional
    arguments are keyword-only now.)"""
    artifact = ModelRegistry(home).open()
    store = CatalogStore(home)
    served = load_served_model(artifact, MmapListStore, catalog=store)
    state = served.catalog.state
    stats = store.stats()
    assert sorted(state.members) == sorted(stats["categories"]) and len(state.members) == CATEGORIES
    assert int((~state.available).sum()) == stats["items"] - stats["available"] > 0
    with pytest.raises(TypeError):
        load_served_model(artifact, MmapListStore, None, store)  # type: ignore[misc]
