"""Every answer's recommendation_id and impression; experiment arms in the server: sticky users,
both versions loaded, fold-in per arm, publishes, a version that fails to load, metrics."""

from __future__ import annotations

import mmap
import shutil
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from recforge.artifacts import ModelRegistry
from recforge.models import Popular
from recforge.online.experiments import ExperimentBook, arm_of
from recforge.online.impressions import ImpressionStore
from recforge.serving import create_app
from tests.serving.conftest import API_KEY, make_config, publish_version
from tests.serving.factors import ToyFactors

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_answers_carry_ids_and_are_recorded(home):
    with TestClient(create_app(make_config(home))) as client:
        first = client.get("/v1/users/u1/recommendations", params={"k": 4}).json()
        second = client.get("/v1/users/u1/recommendations", params={"k": 4}).json()
        similar = client.get("/v1/items/i3/similar", params={"k": 3}).json()
        seen_by = client.get("/v1/items/i3/similar", params={"k": 3, "user_id": "u7"}).json()
        assert client.get("/v1/items/i3/similar", params={"user_id": "x" * 300}).status_code == 422
    ids = [a["recommendation_id"] for a in (first, second, similar, seen_by)]
    assert len(set(ids)) == 4 and "experiment" not in first
    shown = ImpressionStore(home).scan().to_pylist()  # the server stopped: all sealed and durable
    assert [row["recommendation_id"] for row in shown] == ids
    assert shown[0]["user_id"] == "u1" and shown[0]["item_id"] is None
    assert shown[0]["items"] == [item["item_id"] for item in first["items"]]
    assert (shown[0]["version"], shown[0]["source"]) == (first["model_version"], "precomputed")
    assert (shown[2]["user_id"], shown[2]["item_id"], shown[3]["user_id"]) == (None, "i3", "u7")
    assert shown[2]["source"] == similar["source"] and shown[0]["experiment"] is None


def test_impressions_can_be_turned_off(home):
    config = make_config(home)
    config.experiments.impressions = False
    with TestClient(create_app(config)) as client:
        assert client.get("/v1/users/u1/recommendations").json()["recommendation_id"]
    assert ImpressionStore(home).scan().num_rows == 0


@pytest.fixture
def two_versions(home):
    """The published ToyFactors version and a Popular candidate."""
    config = make_config(home, reload_poll_seconds=0.05)
    return config, ModelRegistry(home).current(), publish_version(home, config, Popular(), publish=False)


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def mapped(array) -> bool:
    """Whether ``array`` is a view of a memory-mapped file."""
    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
    return False


def arms_of(client, users, **params):
    return {user: client.get(f"/v1/users/{user}/recommendations", params=params).json() for user in users}


def test_experiment_arms_are_sticky_and_served_side_by_side(home, two_versions):
    config, toy, popular = two_versions
    users = [f"u{n}" for n in range(40)]
    with TestClient(create_app(config)) as client:
        holder = client.app.state.serving.holder
        ExperimentBook(home).start("ab", "current", popular, 0.5)
        assert wait_for(lambda: holder.routing is not None)
        answers = arms_of(client, users, k=5)
        again = arms_of(client, users, k=5)
        for user in users:
            arm = arm_of(user, "ab", 0.5)
            assert answers[user]["experiment"] == {"name": "ab", "arm": arm}
            assert again[user]["experiment"]["arm"] == arm  # sticky
            assert answers[user]["model_version"] == (popular if arm == "treatment" else toy)
        assert {a["experiment"]["arm"] for a in answers.values()} == {"control", "treatment"}
        for user, answer in arms_of(client, [f"stranger{n}" for n in range(10)]).items():
            arm = arm_of(user, "ab", 0.5)  # the fallback of each arm's own version
            assert answer["source"] == "popular" and answer["experiment"]["arm"] == arm
            assert answer["model_version"] == (popular if arm == "treatment" else toy)
        treated = next(u for u in users if arm_of(u, "ab", 0.5) == "treatment")
        similar = client.get("/v1/items/i3/similar", params={"user_id": treated}).json()
        assert similar["model_version"] == popular and similar["experiment"]["arm"] == "treatment"
        anonymous = client.get("/v1/items/i3/similar").json()
        assert anonymous["model_version"] == toy and "experiment" not in anonymous
        # the control arm is the published version itself; the treatment's lists are mapped files
        assert holder.routing.control.model is holder.current.model
        assert mapped(holder.routing.treatment.lists._user_ids)
        metrics = client.get("/metrics").text
        assert (
            f'recforge_experiment_info{{arm="treatment",experiment="ab",version="{popular}"}} 1.0' in metrics
        )

        ExperimentBook(home).stop("ab")
        assert wait_for(lambda: holder.routing is None)
        assert client.get(f"/v1/users/{treated}/recommendations").json()["model_version"] == toy
        assert "recforge_experiment_info{" not in client.get("/metrics").text
    shown = ImpressionStore(home).scan()
    arms = [a for a in shown.column("arm").to_pylist() if a]
    assert len(arms) == 2 * len(users) + 10 + 1  # users twice, strangers, the similar items


def test_fold_in_works_inside_each_arm(home, two_versions):
    config, toy, popular = two_versions
    with TestClient(create_app(config)) as client:
        holder = client.app.state.serving.holder
        ExperimentBook(home).start("fold", "current", popular, 0.5)
        assert wait_for(lambda: holder.routing is not None)
        newcomers = [f"new{n}" for n in range(30)]
        by_arm = {arm_of(u, "fold", 0.5): u for u in newcomers}
        assert set(by_arm) == {"control", "treatment"}
        events = [
            {"user_id": user, "item_id": f"i{j}", "event_type": "like", "timestamp": "2025-06-01T12:00:00Z"}
            for user in by_arm.values()
            for j in (2, 3, 5)
        ]
        assert client.post("/v1/events", json=events, headers=AUTH).json()["accepted"] == 6
        assert holder.cutoff_us() == min(holder.routing.control.cutoff_us, holder.routing.treatment.cutoff_us)
        for arm, user in by_arm.items():
            answer = client.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()
            assert answer["source"] == "foldin" and answer["experiment"]["arm"] == arm
            assert answer["model_version"] == (popular if arm == "treatment" else toy)
            assert not {i["item_id"] for i in answer["items"]} & {"i2", "i3", "i5"}


def test_a_publish_moves_the_current_arm_and_leaves_a_pinned_one(home, two_versions, caplog):
    config, toy, popular = two_versions
    newer = publish_version(home, config, ToyFactors(factors=5, seed=2), publish=False)
    users = [f"u{n}" for n in range(30)]
    with TestClient(create_app(config)) as client:
        holder = client.app.state.serving.holder
        ExperimentBook(home).start("pub", "current", popular, 0.5)
        assert wait_for(lambda: holder.routing is not None)
        ModelRegistry(home).publish(newer)
        assert wait_for(lambda: holder.routing.control.version == newer)
        for user, answer in arms_of(client, users).items():
            expected = popular if arm_of(user, "pub", 0.5) == "treatment" else newer
            assert answer["model_version"] == expected
        ExperimentBook(home).stop("pub")
        ExperimentBook(home).start("pinned", toy, popular, 0.5)
        assert wait_for(lambda: holder.routing is not None and holder.routing.experiment.name == "pinned")
        ModelRegistry(home).publish(toy)  # pinned arms stay; the publish is logged
        assert wait_for(lambda: holder.current.version == toy)
        assert (holder.routing.control.version, holder.routing.treatment.version) == (toy, popular)
        assert wait_for(lambda: "keeps serving control" in caplog.text)
        assert holder.served("anyone").version in (toy, popular) and holder.served(None).version == toy


def test_an_arm_that_cannot_load_stops_the_routing_not_the_server(home, two_versions):
    config, toy, popular = two_versions
    ExperimentBook(home).start("broken", "current", popular, 0.5)
    shutil.rmtree(ModelRegistry(home).versions_dir / popular / "model")
    with TestClient(create_app(config)) as client:
        holder = client.app.state.serving.holder
        assert holder.routing is None and popular in (holder.last_error or "")
        for answer in arms_of(client, [f"u{n}" for n in range(10)]).values():
            assert answer["model_version"] == toy and "experiment" not in answer


def test_online_metrics_are_exported(home):
    config = make_config(home)
    config.experiments.metrics_refresh_seconds = 0.2
    with TestClient(create_app(config)) as client:
        answer = client.get("/v1/users/u1/recommendations", params={"k": 3}).json()
        item = answer["items"][0]["item_id"]
        event = {"user_id": "u1", "item_id": item, "event_type": "purchase", "timestamp": time.time(),
                 "recommendation_id": answer["recommendation_id"]}  # fmt: skip
        assert client.post("/v1/events", json=[event], headers=AUTH).json()["accepted"] == 1
        labels = f'source="precomputed",version="{answer["model_version"]}"'
        assert wait_for(
            lambda: f"recforge_online_conversion_rate{{{labels}}} 1.0" in client.get("/metrics").text
        )
        assert f"recforge_impressions_total{{{labels}}} 1.0" in client.get("/metrics").text
