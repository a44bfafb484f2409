import json
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.artifacts import ModelRegistry, VersionCheckError
from recforge.errors import RecforgeError
from recforge.lists import Lists
from recforge.models.popular import Popular
from recforge.version_checks import checksums


def lists_for(model, k=3):
    n_users, n_items = len(model.users_), len(model.items_)
    users = model.recommend(np.arange(n_users), k=k)
    items = model.similar_items(np.arange(n_items), k=k)
    pop = model.popularity_
    order = np.argsort(-pop, kind="stable")[:k].astype(np.int32)
    return users, items, (order, pop[order].astype(np.float32))


@pytest.fixture
def model():
    x = sp.csr_matrix(np.array([[1.0, 0, 2, 0], [0, 3, 0, 1], [1, 1, 0, 0]], dtype=np.float32))
    return Popular().fit(x)


def create(registry, model, **kwargs):
    users, items, pop = lists_for(model)
    return registry.create(model, Lists(users, items, pop, "popular"), **kwargs)


def test_create_open_round_trip(tmp_path, model):
    registry = ModelRegistry(tmp_path)
    info = create(registry, model, metrics={"ndcg@10": 0.5}, data_window={"last": "2024-01-01T00:00:00Z"})
    assert info.status == "candidate"
    assert registry.current() is None
    with pytest.raises(RecforgeError, match="no published model"):
        registry.open()
    art = registry.open(info.version, verify=True)
    assert art.manifest["metrics"] == {"ndcg@10": 0.5}
    assert art.user_ids.shape == (3, 3) and isinstance(art.user_ids, np.memmap)
    np.testing.assert_array_equal(art.user_ids, model.recommend(np.arange(3), k=3)[0])
    assert art.model.name == "popular"


def test_publish_rollback_prune(tmp_path, model):
    registry = ModelRegistry(tmp_path)
    a = create(registry, model)
    b = create(registry, model)
    registry.publish(a.version)
    registry.publish(b.version)
    assert registry.current() == b.version
    assert registry.get(a.version).status == "retired"
    back = registry.rollback()
    assert back.version == a.version and registry.current() == a.version
    assert registry.get(b.version).status == "retired"
    with pytest.raises(RecforgeError, match="no earlier"):
        registry.rollback()
    c = create(registry, model)
    registry.reject(c.version, "NDCG below the published model")
    assert registry.get(c.version).status == "rejected"
    assert registry.get(c.version).reason.startswith("NDCG")
    deleted = registry.prune(keep=1)
    # the newest (c) is kept, the published one (a) is never deleted
    assert deleted == [b.version]
    assert [v.version for v in registry.list()] == [a.version, c.version]


def test_corruption_detected(tmp_path, model):
    registry = ModelRegistry(tmp_path)
    info = create(registry, model)
    path = tmp_path / "models" / "versions" / info.version / "lists" / "users.ids.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RecforgeError, match="checksum mismatch in lists/users.ids.npy"):
        registry.open(info.version, verify=True)


def test_bad_names_and_shapes(tmp_path, model):
    registry = ModelRegistry(tmp_path)
    with pytest.raises(RecforgeError, match="not a model version"):
        registry.get("../etc")
    users, items, pop = lists_for(model)
    with pytest.raises(ValueError, match="users.ids"):
        registry.create(model, Lists((users[0][:2], users[1][:2]), items, pop))
    assert list((tmp_path / "models" / "versions").iterdir()) == []


def _slow_create(home, ready):
    x = sp.csr_matrix(np.eye(50, dtype=np.float32))
    model = Popular().fit(x)
    original = np.save

    def slow_save(*args, **kwargs):
        ready.set()
        time.sleep(0.2)
        return original(*args, **kwargs)

    np.save = slow_save
    users, items, pop = lists_for(model)
    ModelRegistry(home).create(model, Lists(users, items, pop))


def test_killed_writer_leaves_no_visible_version(tmp_path):
    ready = multiprocessing.get_context("spawn").Event()
    proc = multiprocessing.get_context("spawn").Process(target=_slow_create, args=(tmp_path, ready))
    proc.start()
    assert ready.wait(30)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    registry = ModelRegistry(tmp_path)
    assert registry.list() == []
    assert registry.prune(keep=1) == []  # also clears the temporary leftovers
    assert not list((tmp_path / "models" / "versions").glob(".tmp-*"))


def test_current_pointer_is_plain_text(tmp_path, model):
    registry = ModelRegistry(tmp_path)
    info = create(registry, model)
    registry.publish(info.version)
    assert (tmp_path / "models" / "CURRENT").read_text().strip() == info.version
    assert (
        json.loads((tmp_path / "models" / "versions" / info.version / "status.json").read_text())["status"]
        == "published"
    )


# issue 14: nothing unverified is published; one bad file breaks nothing else -----------------
def rewrite(registry, version, name, array):
    """Replace a list file *and* its checksum: a version corrupt in content, not in transit."""
    path = registry.versions_dir / version
    np.save(path / "lists" / f"{name}.npy", array, allow_pickle=False)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["checksums"] = checksums(path)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_publish_verifies_and_refuses_a_bad_version(tmp_path, model):
    registry = ModelRegistry(tmp_path)
    good = create(registry, model)
    registry.publish(good.version)
    out_of_range = create(registry, model)
    ids = np.array(registry.open(out_of_range.version).user_ids)
    ids[1, 0] = 4  # 4 items: 4 is no item
    rewrite(registry, out_of_range.version, "users.ids", ids)
    with pytest.raises(VersionCheckError, match=r"users.ids holds item ids from -?\d+ to 4, outside -1..3"):
        registry.publish(out_of_range.version)
    truncated = create(registry, model)
    path = registry.versions_dir / truncated.version / "lists" / "items.scores.npy"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(VersionCheckError, match=r"checksum mismatch in lists/items.scores.npy"):
        registry.publish(truncated.version)
    missing = create(registry, model)
    (registry.versions_dir / missing.version / "model" / "model.json").unlink()
    with pytest.raises(VersionCheckError, match=r"missing model/model.json"):
        registry.publish(missing.version)
    assert registry.current() == good.version  # nothing changed
    assert [r["version"] for r in registry.journal()] == [good.version]


def test_rollback_follows_the_publish_history_not_the_names(tmp_path, model):
    registry = ModelRegistry(tmp_path)
    v1, v2, v3 = create(registry, model), create(registry, model), create(registry, model)
    registry.publish(v2.version)
    registry.publish(v1.version)
    assert registry.rollback().version == v2.version  # publish V2, publish V1, rollback: V2
    registry.publish(v3.version)
    registry.publish(v1.version)
    assert registry.rollback().version == v3.version
    assert registry.rollback().version == v2.version
    with pytest.raises(RecforgeError, match="no earlier published version"):
        registry.rollback()
    assert [r["action"] for r in registry.journal()] == ["publish"] * 2 + ["rollback"] + ["publish"] * 2 + [
        "rollback"
    ] * 2


def test_rollback_verifies_its_target(tmp_path, model):
    registry = ModelRegistry(tmp_path)
    a, b = create(registry, model), create(registry, model)
    registry.publish(a.version)
    registry.publish(b.version)
    path = registry.versions_dir / a.version / "lists" / "popular.ids.npy"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(VersionCheckError, match="checksum mismatch in lists/popular.ids.npy"):
        registry.rollback()
    assert registry.current() == b.version


def test_a_broken_manifest_is_listed_as_broken_and_passed_over(tmp_path, model):
    registry = ModelRegistry(tmp_path)
    a, b, c = create(registry, model), create(registry, model), create(registry, model)
    registry.publish(a.version)
    registry.publish(b.version)
    registry.publish(c.version)
    (registry.versions_dir / b.version / "manifest.json").write_text("{not json")
    listed = {v.version: v for v in registry.list()}
    assert listed[b.version].status == "broken" and listed[b.version].broken
    assert str(registry.versions_dir / b.version / "manifest.json") in listed[b.version].reason
    with pytest.raises(RecforgeError, match=r"manifest.json: not valid JSON"):
        registry.get(b.version)
    assert registry.rollback().version == a.version  # b is skipped
    assert registry.last_good(exclude={a.version}) == c.version
