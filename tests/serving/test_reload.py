"""Hot reload: newly published versions are served without failing or dropping a request."""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from recforge.artifacts import ModelRegistry
from recforge.models import Popular
from recforge.serving import create_app
from tests.serving.conftest import make_config, publish_version
from tests.serving.factors import ToyFactors


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_publishing_and_rolling_back_while_requests_run_fails_none(home):
    config = make_config(home, reload_poll_seconds=0.05)
    registry = ModelRegistry(home)
    first = registry.current()
    candidates = [
        publish_version(home, config, model, publish=False)
        for model in (Popular(), ToyFactors(factors=4), ToyFactors(factors=6, seed=1))
    ]
    with TestClient(create_app(config)) as client:
        holder = client.app.state.serving.holder
        stop = threading.Event()
        failures: list[str] = []
        seen: set[str] = set()
        counts = [0]

        def hammer() -> None:
            paths = [
                "/v1/users/u5/recommendations?k=20",
                "/v1/users/ghost/recommendations",
                "/v1/items/i7/similar",
            ]
            while not stop.is_set():
                for path in paths:
                    response = client.get(path)
                    counts[0] += 1
                    if response.status_code != 200 or len(response.json()["items"]) == 0:
                        failures.append(f"{path}: {response.status_code} {response.text[:200]}")
                    else:
                        seen.add(response.json()["model_version"])

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            for version in candidates:
                registry.publish(version)
                assert wait_for(lambda v=version: holder.current.version == v)
                before = counts[0]
                assert wait_for(lambda b=before: counts[0] > b + 20)
            rolled = registry.rollback()
            assert rolled.version == candidates[1]
            assert wait_for(lambda: holder.current.version == candidates[1])
            time.sleep(0.2)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        text = client.get("/metrics").text
    assert not failures, failures[:5]
    assert {first, *candidates} <= seen
    assert counts[0] > 100
    assert 'recforge_model_reloads_total{result="loaded"} 5.0' in text
    assert f'recforge_model_info{{model="toyfactors",version="{candidates[1]}"}} 1.0' in text
    assert text.count("recforge_model_info{") == 1


def test_a_broken_version_is_skipped_and_the_old_one_kept(home):
    config = make_config(home, reload_poll_seconds=0.05)
    registry = ModelRegistry(home)
    good = registry.current()
    broken = publish_version(home, config, Popular(), publish=False)
    (home / "models" / "versions" / broken / "lists" / "users.ids.npy").unlink()
    with TestClient(create_app(config)) as client:
        holder = client.app.state.serving.holder
        registry.publish(broken, verify=False)  # as an older recforge, or a hand-edited CURRENT, did
        assert wait_for(lambda: holder.last_error is not None)
        assert holder.current.version == good
        assert client.get("/readyz").json()["model_version"] == good
        assert client.get("/v1/users/u1/recommendations").status_code == 200
        assert 'recforge_model_reloads_total{result="failed"} 1.0' in client.get("/metrics").text
        fixed = publish_version(home, config, ToyFactors(factors=5), publish=False)
        registry.publish(fixed)
        assert wait_for(lambda: holder.current.version == fixed)
        assert client.get("/v1/users/u1/recommendations").json()["model_version"] == fixed


def test_a_model_published_after_start_makes_the_server_ready(tmp_path, template_home):
    import shutil

    from recforge.data.store import EventStore

    home = tmp_path / "empty"
    shutil.copytree(template_home / "events", home / "events")
    config = make_config(home, reload_poll_seconds=0.05)
    with TestClient(create_app(config)) as client:
        assert client.get("/readyz").status_code == 503
        version = publish_version(home, config, Popular())
        assert wait_for(lambda: client.get("/readyz").status_code == 200)
        assert client.get("/v1/users/u1/recommendations").json()["model_version"] == version
        assert EventStore(home).stats()["events"] > 0


def out_of_range(home, config):
    """A version whose user lists hold an item id past the catalogue, checksums and all."""
    import json

    import numpy as np

    from recforge.version_checks import checksums

    version = publish_version(home, config, ToyFactors(factors=3), publish=False)
    path = home / "models" / "versions" / version
    ids = np.load(path / "lists" / "users.ids.npy")
    ids[:, 0] = 10_000
    np.save(path / "lists" / "users.ids.npy", ids)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["checksums"] = checksums(path)
    (path / "manifest.json").write_text(json.dumps(manifest))
    return version


def test_a_version_failing_verification_is_never_swapped_in(home):
    # issue 14: out-of-range list ids were swapped in, /readyz said ready, every request was a 500
    config = make_config(home, reload_poll_seconds=0.05)
    registry = ModelRegistry(home)
    good = registry.current()
    bad = out_of_range(home, config)
    with TestClient(create_app(config)) as client:
        holder = client.app.state.serving.holder
        registry.publish(bad, verify=False)
        assert wait_for(lambda: holder.last_error is not None)
        assert "users.ids holds item ids from" in holder.last_error
        ready = client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert (body["served_version"], body["published_version"]) == (good, bad)
        assert body["reason"].startswith(f"serving {good}, not the published {bad}: ")
        model = client.get("/v1/model").json()
        assert model["version"] == good and model["published_version"] == bad and "mismatch" in model
        for user in ("u1", "u2", "ghost"):
            response = client.get(f"/v1/users/{user}/recommendations")
            assert response.status_code == 200 and response.json()["model_version"] == good
        registry.publish(good)  # back: they agree again
        assert wait_for(lambda: holder.published == good)
        assert "reason" not in client.get("/readyz").json()


def test_a_corrupt_version_at_start_up_falls_back_to_the_newest_good_one(home):
    # issue 14: a truncated version published with exit 0 and a restarted server had no model
    config = make_config(home, reload_poll_seconds=0.05)
    registry = ModelRegistry(home)
    older = registry.current()
    good = publish_version(home, config, ToyFactors(factors=5))  # published: the history is older, good
    corrupt = publish_version(home, config, Popular())
    lists = home / "models" / "versions" / corrupt / "lists" / "popular.ids.npy"
    lists.write_bytes(lists.read_bytes()[:-8])
    assert registry.current() == corrupt and older != good
    with TestClient(create_app(config)) as client:
        body = client.get("/readyz").json()
        assert body["status"] == "ready" and body["served_version"] == good
        assert body["published_version"] == corrupt
        assert "checksum mismatch in lists/popular.ids.npy" in body["reason"]
        assert client.get("/v1/users/u1/recommendations").json()["model_version"] == good
