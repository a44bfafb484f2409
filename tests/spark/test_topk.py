"""Distributed batch top-K equals local recommend / similar_items, for every model (issues 9, 19);
lists into Redis."""

from __future__ import annotations

import numpy as np
import pytest

from recforge import ALS, ItemKNN, Popular
from recforge.lists import RedisLists
from recforge.serving.stores import RedisListStore
from recforge.spark.session import FAIL_ONCE
from recforge.spark.topk import (
    RedisTarget,
    lists_array,
    recommend_all_users,
    recommend_lists,
    similar_items_all_items,
    write_redis,
)
from tests.serving.redis_server import redis_server
from tests.spark.conftest import random_pairs

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def model() -> ALS:
    _, interactions = random_pairs(4, n_users=300, n_items=90, nnz=3000)
    return ALS(factors=8, iterations=3, random_state=1).fit(interactions)


def test_top_k_for_all_users_equals_local_recommend(spark, model, tmp_path):
    sc = spark.sparkContext
    sc.setLocalProperty(FAIL_ONCE, f"topk:{tmp_path / 'failed'}")  # and survives a retried task
    try:
        lists = recommend_all_users(spark, model, k=7, path=tmp_path / "users", chunk_rows=64)
    finally:
        sc.setLocalProperty(FAIL_ONCE, None)
    assert (tmp_path / "failed").exists()
    assert lists.count() == len(model.users_)
    ids, scores = lists_array(lists, len(model.users_), 7)
    expected_ids, expected_scores = model.recommend(np.arange(len(model.users_)), k=7)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    row = lists.filter("user = 'u5'").first()
    assert row["index"] == model.users_.index("u5")
    assert list(row["items"]) == [i for i in expected_ids[row["index"]] if i >= 0]


def test_similar_items_equal_local_similar_items(spark, model, tmp_path):
    lists = similar_items_all_items(spark, model, k=5, chunk_rows=32)
    ids, scores = lists_array(lists, len(model.items_), 5)
    expected_ids, expected_scores = model.similar_items(np.arange(len(model.items_)), k=5)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [lambda: ItemKNN(neighbors=6), Popular], ids=["itemknn", "popular"])
def test_every_models_lists_are_its_own_recommend(spark, make):
    """The item side broadcast (neighbour lists, popularity), users in chunks: the same bits."""
    _, interactions = random_pairs(4, n_users=300, n_items=90, nnz=3000)
    model = make().fit(interactions)
    everyone = np.arange(len(model.users_))
    ids, scores = lists_array(recommend_all_users(spark, model, k=7, chunk_rows=64), len(everyone), 7)
    expected_ids, expected_scores = model.recommend(everyone, k=7)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(scores, expected_scores)
    items = np.arange(len(model.items_))
    ids, scores = lists_array(similar_items_all_items(spark, model, k=5, chunk_rows=32), len(items), 5)
    np.testing.assert_array_equal(ids, model.similar_items(items, k=5)[0])
    some = np.array([5, 0, 17, 299, 42], dtype=np.int32)  # an evaluation's users, in its order
    np.testing.assert_array_equal(
        recommend_lists(spark, model, some, 4, chunk_rows=2), model.recommend(some, k=4)[0]
    )


@pytest.mark.redis
def test_lists_go_straight_into_the_redis_store_serving_reads(spark, model, tmp_path):
    users = recommend_all_users(spark, model, k=6, path=tmp_path / "users")
    items = similar_items_all_items(spark, model, k=4, path=tmp_path / "items")
    with redis_server() as url:
        target = RedisTarget(url, version="v-spark", prefix="rf")
        lists = RedisLists(url, "rf", keep_versions=3)
        lists.begin("v-spark")
        assert write_redis(users, target, "users") == len(model.users_)
        assert write_redis(items, target, "items") == len(model.items_)
        popular = (np.array([3, 1], np.int32), np.array([9.0, 4.0], np.float32))
        lists.finish("v-spark", popular)
        store = RedisListStore(lists, "v-spark")
        expected_ids, expected_scores = model.recommend(["u7"], k=6)
        got_ids, got_scores = store.user(model.users_.index("u7"), "u7")
        np.testing.assert_array_equal(model.items_.ids(got_ids[None])[0], expected_ids[0])
        np.testing.assert_allclose(got_scores, expected_scores[0], rtol=1e-5)
        similar_ids, _ = store.item(0, model.items_.ids(np.array([0]))[0])
        np.testing.assert_array_equal(similar_ids, model.similar_items(np.array([0]), k=4)[0][0])
        np.testing.assert_array_equal(store.popular()[0], popular[0])
        assert lists.ready("v-spark")
