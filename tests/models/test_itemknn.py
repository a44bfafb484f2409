"""ItemKNN: the contract, the weights, similarity equal to a dense cosine, scoring."""

from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.models.itemknn import ItemKNN, knn_weights
from tests.models.contract import RecommenderContract


class TestItemKNN(RecommenderContract):
    bad_params: ClassVar[list[dict]] = [{"neighbors": 0}, {"neighbors": 2.5}, {"num_threads": -1}]

    def make(self):
        return ItemKNN(neighbors=5)


def test_weights_extend_log_count_continuously():
    r = np.array([0.25, 0.5, 0.999999, 1.0, np.e, 10.0], dtype=np.float32)
    np.testing.assert_allclose(knn_weights(r), [0.25, 0.5, 0.999999, 1.0, 2.0, 1 + np.log(10)], rtol=1e-6)
    assert knn_weights(np.array([1 - 1e-6], np.float32)) == pytest.approx(1.0, abs=2e-6)


def dense_model(r, neighbors):
    """The model written out densely: weights, unit user rows, column cosine, top-N."""
    w = np.where(r >= 1, 1 + np.log(np.maximum(r, 1)), r) * (r > 0)
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    w = w / np.where(norms > 0, norms, 1)
    cols = np.linalg.norm(w, axis=0)
    cos = (w.T @ w) / np.outer(np.where(cols > 0, cols, 1), np.where(cols > 0, cols, 1))
    np.fill_diagonal(cos, 0)
    return w, cos


def decayed(seed, shape=(50, 30), density=0.2):
    m = sp.random(*shape, density=density, random_state=seed, format="csr", dtype=np.float32)
    m.data = (m.data * 4).astype(np.float32)  # fractional (decayed) and > 1 (repeated) r
    m = m.tolil()
    m[4, :] = 0  # an empty user
    return sp.csr_matrix(m)


@pytest.mark.parametrize("seed", range(3))
def test_similarity_equals_dense_cosine_and_scores_are_w_times_s(seed):
    m = decayed(seed)
    model = ItemKNN(neighbors=4).fit(m)
    w, cos = dense_model(m.toarray(), 4)
    S = model.similarity_
    assert S.shape == (30, 30) and S.dtype == np.float32
    for i in range(30):
        cols = S[i].indices
        assert len(cols) == min(4, np.count_nonzero(cos[i] > 1e-12)) and i not in cols
        np.testing.assert_allclose(S[i].data, cos[i, cols], rtol=1e-5)
        rest = np.setdiff1d(np.flatnonzero(cos[i] > 1e-12), cols)
        assert len(rest) == 0 or cos[i, rest].max() <= S[i].data.min() + 1e-6
    # recommendation scores: w_u @ similarity_
    ids, scores = model.recommend(np.arange(50), k=30, filter_seen=False)
    expected = w @ S.toarray()
    np.testing.assert_allclose(scores, np.take_along_axis(expected, ids, axis=1), rtol=1e-5, atol=1e-7)


def test_similar_items_are_the_stored_lists_best_first():
    model = ItemKNN(neighbors=6).fit(decayed(7))
    ids, scores = model.similar_items(np.arange(30), k=8)
    S = model.similarity_
    for i in range(30):
        n = S[i].nnz
        assert sorted(ids[i, :n].tolist()) == sorted(S[i].indices.tolist())
        assert (ids[i, n:] == -1).all() and np.isneginf(scores[i, n:]).all()
        np.testing.assert_allclose(scores[i, :n], S[i].toarray()[0, ids[i, :n]])
        assert (np.diff(scores[i, :n]) <= 0).all()


def test_history_scores_like_a_user_with_that_row():
    m = decayed(2)
    model = ItemKNN(neighbors=5).fit(m)
    row = m[7]
    ids, scores = model.recommend_for_history(row.indices, row.data, k=10)
    want_ids, want_scores = model.recommend(7, k=10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)
    # repeated items in a history add up, as events do in r_ui
    split = np.repeat(row.indices, 2), np.repeat(row.data / 2, 2)
    np.testing.assert_array_equal(model.recommend_for_history(*split, k=10)[0], ids)


def test_result_does_not_depend_on_thread_count():
    m = decayed(5, shape=(300, 200), density=0.05)
    a = ItemKNN(neighbors=10, num_threads=1).fit(m).similarity_
    b = ItemKNN(neighbors=10, num_threads=2).fit(m).similarity_
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.data, b.data)
