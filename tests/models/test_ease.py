"""EASE (issue 16): the contract, the closed form against a float64 dense solution, fold-in as a
product with B, similar items from B's rows and the catalogue cap (its fit time on ml-1m-pairs
is measured in benchmarks/bench_tuning.py; its accuracy floor is in test_floors.py)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from recforge import EASE
from recforge.models.registry import MODELS
from tests.models.contract import RecommenderContract


class TestEASE(RecommenderContract):
    bad_params: ClassVar[list[dict]] = [
        {"regularization": 0.0},
        {"regularization": -1.0},
        {"max_items": 0},
        {"num_threads": -1},
    ]

    def make(self):
        return EASE(regularization=1.0)


def ratings(seed=0, shape=(300, 120), density=0.1):
    m = sp.random(*shape, density=density, format="csr", random_state=seed, dtype=np.float32)
    m.data = np.ceil(m.data * 5).astype(np.float32)  # ratings 1..5 as r
    return m


def dense_ease(X, regularization):
    """Steck's closed form in float64 with a dense inverse."""
    X = X.toarray().astype(np.float64)
    P = np.linalg.inv(X.T @ X + regularization * np.eye(X.shape[1]))
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


@pytest.mark.parametrize("seed", range(3))
def test_weights_are_the_closed_form(seed):
    m = ratings(seed)
    model = EASE(regularization=20.0).fit(m)
    expected = dense_ease(m, 20.0)
    assert model.weights_.dtype == np.float32 and (np.diag(model.weights_) == 0).all()
    np.testing.assert_allclose(model.weights_, expected, atol=2e-5 * np.abs(expected).max())
    # the reconstruction it minimises: no other zero-diagonal B does better (perturb one entry)
    X = m.toarray().astype(np.float64)

    def objective(B):
        return np.sum((X - X @ B) ** 2) + 20.0 * np.sum(B**2)

    best = objective(expected)
    for i, j in ((0, 5), (7, 3), (50, 51)):
        nudged = expected.copy()
        nudged[i, j] += 1e-3
        assert objective(nudged) > best


def test_scores_are_x_times_b_and_fold_in_is_the_same_product():
    m = ratings(1)
    model = EASE(regularization=10.0).fit(m)
    B = model.weights_.astype(np.float64)
    X = m.toarray()
    ids, scores = model.recommend(np.arange(300), k=5, filter_seen=False)
    expected = X @ B
    np.testing.assert_allclose(scores, np.take_along_axis(expected, ids, axis=1), rtol=1e-4, atol=1e-5)
    assert (scores[:, 0] >= expected.max(axis=1) - 1e-4).all()
    for u in (0, 17, 123):
        row = m[u]
        folded, folded_scores = model.recommend_for_history(row.indices, row.data, k=5)
        served, served_scores = model.recommend(u, k=5)
        np.testing.assert_array_equal(folded, served)
        np.testing.assert_allclose(folded_scores, served_scores, rtol=1e-5)


def test_similar_items_are_the_largest_weights_of_the_row():
    m = ratings(2)
    model = EASE(regularization=10.0).fit(m)
    ids, scores = model.similar_items(np.arange(120), k=4)
    for i in range(120):
        row = model.weights_[i].copy()
        row[i] = -np.inf
        np.testing.assert_allclose(scores[i], np.sort(row)[::-1][:4], rtol=1e-6)
        assert i not in ids[i]


def test_a_catalogue_above_the_cap_is_refused_with_the_memory_it_needs():
    m = ratings(0, shape=(50, 120))
    with pytest.raises(ValueError, match=r"120 items take 0\.0 GiB, above max_items=100 .*use ALS"):
        EASE(max_items=100).fit(m)
    with pytest.raises(ValueError, match=r"25,000 items take 2\.3 GiB"):
        EASE().fit(sp.csr_matrix((3, 25_000), dtype=np.float32))


def test_registered_with_its_search_space():
    entry = MODELS["ease"]
    assert entry.cls is EASE and set(entry.search_space) == {"regularization"}
