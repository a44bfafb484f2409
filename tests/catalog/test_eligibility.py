"""Eligibility over a model's vocabulary, the attribute features, and top-K with eligibility (issue 15)."""

import numpy as np
import pytest

from recforge import recommend_all, similar_items_all
from recforge.catalog import Catalog
from recforge.catalog.features import AttributeFeatures
from recforge.data.vocabulary import Vocabulary


@pytest.fixture
def catalog():
    return Catalog.from_records(
        [
            {"item_id": "a", "categories": "x|y", "brand": "B", "price": 10},
            {"item_id": "b", "categories": "y", "available": False, "brand": "B", "price": 30},
            {"item_id": "c", "categories": "x", "brand": "C", "price": 20},
            {"item_id": "zz", "categories": "x"},  # not in the vocabulary: ignored
        ]
    )


def test_eligibility_over_a_vocabulary(catalog):
    vocab = Vocabulary(["c", "b", "a", "d"])  # d: not in the catalog: available, in no category
    eligible = catalog.eligibility(vocab)
    assert eligible.available.tolist() == [True, False, True, True]
    assert {k: v.tolist() for k, v in eligible.members.items()} == {"x": [0, 2], "y": [1, 2]}
    assert eligible.items("y").tolist() == [2]
    assert eligible.items(["x", "y"]).tolist() == [0, 2]
    assert eligible.items(["nope"]).tolist() == []
    assert eligible.items().tolist() == [0, 2, 3]
    assert eligible.unavailable().tolist() == [1]
    assert eligible.largest(1) == ["x"]


def test_topk_takes_the_eligibility(catalog):
    vocab = Vocabulary(["a", "b", "c", "d"])
    eligible = catalog.eligibility(vocab)
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(4, 4)).astype(np.float32)
    ids, _ = recommend_all(users, items, 4, eligibility=eligible, categories=["y"])
    assert set(ids[ids >= 0].tolist()) == {0} and (ids[:, 1:] == -1).all()
    ids, _ = recommend_all(users, items, 4, eligibility=eligible)
    assert not (ids == 1).any() and (ids[:, :3] >= 0).all()
    brute = np.argsort(-(users @ items[[0, 2, 3]].T), axis=1, kind="stable")
    np.testing.assert_array_equal(ids[:, :3], np.array([0, 2, 3])[brute])
    similar, _ = similar_items_all(items, 3, eligibility=eligible, categories="x")
    assert set(similar[similar >= 0].tolist()) <= {0, 2}
    with pytest.raises(ValueError, match="categories= needs eligibility="):
        recommend_all(users, items, 2, categories="x")


def test_features_layout(catalog):
    features = AttributeFeatures.fit(catalog)
    assert features.categories == ("x", "y")
    assert features.strings == {"brand": ("B",)}  # C occurs once: not a feature
    assert [n.name for n in features.numbers] == ["price"]
    x = features.transform(catalog)
    assert x.shape == (4, features.width) == (4, 2 + 1 + 3)
    np.testing.assert_array_equal(x[:, :3], [[1, 1, 1], [0, 1, 1], [1, 0, 0], [1, 0, 0]])
    z = (np.array([10, 30, 20]) - 20) / np.std([10, 30, 20])
    np.testing.assert_allclose(x[:3, 3], z, rtol=1e-6)
    np.testing.assert_allclose(x[:3, 4], z**2, rtol=1e-6)
    assert x[3].tolist()[3:] == [0, 0, 1]  # no price: z = 0, the absence flagged
    again = AttributeFeatures.from_dict(features.to_dict())
    np.testing.assert_array_equal(again.transform(catalog), x)
