"""SparkItemKNN: the blocked sparse product gives local ItemKNN's lists, bit for bit (issue 19)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recforge import ItemKNN
from recforge.data.interactions import Interactions
from recforge.data.vocabulary import Vocabulary
from recforge.spark import SparkItemKNN
from tests.spark.conftest import random_pairs

pytestmark = pytest.mark.spark


def assert_same_model(fitted: ItemKNN, local: ItemKNN) -> None:
    assert isinstance(fitted, ItemKNN)
    assert fitted.users_ == local.users_ and fitted.items_ == local.items_
    assert fitted.get_params() == local.get_params()
    for name in ("similarity_", "user_weights_", "seen_"):
        got, want = getattr(fitted, name), getattr(local, name)
        np.testing.assert_array_equal(got.indptr, want.indptr, err_msg=name)
        np.testing.assert_array_equal(got.indices, want.indices, err_msg=name)
        np.testing.assert_array_equal(got.data, want.data, err_msg=name)  # the same bits


def fractional_pairs(seed: int, n_users: int = 120, n_items: int = 70, nnz: int = 1400):
    """Distinct pairs with decayed-looking fractional values, as a build produces them."""
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, n_users * n_items, nnz))
    users, items = keys // n_items, keys % n_items
    values = np.float32(rng.gamma(0.8, 2.0, len(keys)) + 1e-3)
    frame = pd.DataFrame(
        {"user": [f"u{u}" for u in users], "item": [f"i{i}" for i in items], "value": values}
    )
    user_vocab = Vocabulary.from_values(frame["user"].tolist())
    item_vocab = Vocabulary.from_values(frame["item"].tolist())
    matrix = sp.csr_matrix(
        (values, (user_vocab.lookup(frame["user"].tolist()), item_vocab.lookup(frame["item"].tolist()))),
        shape=(len(user_vocab), len(item_vocab)),
    )
    return frame, Interactions.from_csr(matrix, user_vocab, item_vocab)


@pytest.mark.parametrize(
    ("data", "neighbors", "blocks"),
    [
        (random_pairs(6, nnz=2500), 5, (3, 4)),
        (fractional_pairs(7), 8, (2, 5)),
        (random_pairs(8), 200, (1, 1)),
        # "10" sorts before "9": the vocabularies are of strings, the lookup by value
        (random_pairs(9, integer_ids=True), 6, (2, 3)),
    ],
    ids=["counts-with-ties", "fractional", "more-neighbours-than-items", "integer-ids"],
)
def test_same_lists_as_local_itemknn(spark, data, neighbors, blocks):
    frame, interactions = data
    local = ItemKNN(neighbors=neighbors).fit(interactions)
    fitted = SparkItemKNN(neighbors=neighbors, num_user_blocks=blocks[0], num_item_blocks=blocks[1]).fit(
        spark.createDataFrame(frame)
    )
    assert_same_model(fitted, local)
    users = np.arange(len(local.users_))
    np.testing.assert_array_equal(fitted.recommend(users, k=6)[0], local.recommend(users, k=6)[0])


def test_parameters_are_itemknns_and_checked_before_spark():
    assert SparkItemKNN().knn.get_params() == ItemKNN().get_params()
    assert SparkItemKNN(ItemKNN(neighbors=7), num_item_blocks=3).knn.neighbors == 7
    with pytest.raises(TypeError, match="not both"):
        SparkItemKNN(ItemKNN(), neighbors=3)
    with pytest.raises(TypeError, match="recforge.ItemKNN"):
        SparkItemKNN(5)
    with pytest.raises(ValueError, match="neighbors"):
        SparkItemKNN(neighbors=0).fit(None)
    with pytest.raises(ValueError, match="num_user_blocks"):
        SparkItemKNN(num_user_blocks=0).fit(None)


def test_a_cached_input_stays_cached_and_nothing_else_is_left_cached(spark):
    """``fit`` reads a cached input in place: it neither uncaches it nor leaves a copy cached."""
    frame, interactions = random_pairs(10, integer_ids=True)
    data = spark.createDataFrame(frame).cache()
    data.count()
    persisted = spark.sparkContext._jsc.sc().getPersistentRDDs().size()
    fitted = SparkItemKNN(neighbors=4, num_user_blocks=2, num_item_blocks=2).fit(data)
    assert_same_model(fitted, ItemKNN(neighbors=4).fit(interactions))
    assert data.storageLevel.useMemory
    assert spark.sparkContext._jsc.sc().getPersistentRDDs().size() == persisted  # nothing left
    data.unpersist()
