"""The evaluation protocol: served lists (seen items filtered), relevant sets, users evaluated,
model checks, the per-iteration validation callback, and compare()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.data import Interactions, Vocabulary
from recforge.evaluation import Evaluator, compare, evaluate, metrics_at_k
from recforge.models import Popular
from recforge.models.base import FitProgress, Recommender

# 5 users x 6 items. Popularity (train counts): item 0: 4, item 1: 3, item 2: 2, item 3: 1.
TRAIN = np.array(
    [
        [1, 1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 0, 0, 1, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ],
    dtype=np.float32,
)
# test ratings: user 0 likes 3 (5) and 4 (2); user 1 likes 2 (4) and has 0 again (5, also in
# train); user 2 only item 1 at rating 3; user 3 nothing; user 4 item 0 (4)
TEST = np.array(
    [
        [0, 0, 0, 5, 2, 0],
        [5, 0, 4, 0, 0, 0],
        [0, 3, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [4, 0, 0, 0, 0, 0],
    ],
    dtype=np.float32,
)


@pytest.fixture
def train():
    return Interactions.from_csr(sp.csr_matrix(TRAIN))


@pytest.fixture
def test(train):
    ratings = sp.csr_matrix(TEST)
    return Interactions(sp.csr_matrix(TEST), train.users, train.items, ratings)


@pytest.fixture
def popular(train):
    return Popular().fit(train)


def test_evaluate_uses_the_served_lists_and_the_unseen_relevant_items(train, test, popular):
    result = evaluate(popular, train, test, k=2)
    # relevant (any test entry): u0 {3, 4}, u1 {2} (0 is in train: left out), u2 {1}, u4 {0}
    assert result.users == 4 and result.relevant == 5 and result.relevant_seen_in_train == 1
    # served lists (seen filtered): u0 [3, 4], u1 [2, 3], u2 [1, 2], u4 [0, 1]
    assert result.metrics["precision"] == pytest.approx((2 / 2 + 1 / 2 + 1 / 2 + 1 / 2) / 4)
    assert result.metrics["recall"] == pytest.approx(1.0)
    assert result.metrics["hit_rate"] == pytest.approx(1.0)
    assert result.metrics["coverage"] == pytest.approx(5 / 6)
    assert result.name == "popular" and result.k == 2
    assert result.recommend_seconds >= 0 and result.metric_seconds >= 0


def test_min_rating_selects_the_positives_and_their_gains(train, test, popular):
    evaluator = Evaluator(train, test, k=1, min_rating=4, metrics=["precision", "ndcg_graded", "map"])
    # positives: u0 {3: 5}, u1 {2: 4} (0 is seen), u4 {0: 4}; u2's rating 3 is not a positive
    np.testing.assert_array_equal(evaluator.users, [0, 1, 4])
    np.testing.assert_allclose(evaluator.relevant.toarray()[0], [0, 0, 0, 5, 0, 0])
    scores = evaluator.score(popular)
    assert list(scores) == ["precision", "ndcg_graded", "map"]
    assert scores["precision"] == pytest.approx(1.0)  # lists [3], [2], [0]


def test_evaluator_agrees_with_recommend_plus_metrics(train, test, popular):
    evaluator = Evaluator(train, test, k=3)
    ids, _ = popular.recommend(evaluator.users, k=3, filter_seen=True)
    expected = metrics_at_k(ids, evaluator.relevant, 3, evaluator.metrics)
    assert evaluator.score(popular) == pytest.approx(expected)
    per_user = evaluator.evaluate(popular, per_user=True)
    np.testing.assert_array_equal(per_user.user_indices, evaluator.users)
    assert set(per_user.per_user) == set(evaluator.metrics) - {"coverage"}
    np.testing.assert_allclose(np.nanmean(per_user.per_user["ndcg"]), per_user.metrics["ndcg"])


def test_the_model_must_be_fitted_on_train(train, test):
    evaluator = Evaluator(train, test, k=2)
    with pytest.raises(ValueError, match="not fitted"):
        evaluator.score(Popular())
    other = Popular().fit(sp.csr_matrix(np.ones((5, 6), dtype=np.float32)))  # same ids, other data
    with pytest.raises(ValueError, match="fitted on 30 pairs, train has 10"):
        evaluator.score(other)
    with pytest.raises(ValueError, match="fitted on 30 pairs"):
        Evaluator(train.matrix, test.matrix, k=2).score(other)
    renamed = Interactions(train.matrix, Vocabulary([f"user{u}" for u in range(5)]), train.items)
    with pytest.raises(ValueError, match="vocabularies"):
        evaluator.score(Popular().fit(renamed))
    with pytest.raises(ValueError, match="users x items"):
        Evaluator(None, sp.csr_matrix(TEST[:3]), k=2).score(other)


def test_holdout_checks():
    with pytest.raises(ValueError, match="share the same"):
        a = Interactions.from_csr(sp.csr_matrix(TRAIN))
        others = Vocabulary([f"user{u}" for u in range(5)])
        Evaluator(a, Interactions(sp.csr_matrix(TEST), others, a.items), k=2)
    with pytest.raises(ValueError, match="no rating events"):
        Evaluator(None, Interactions.from_csr(sp.csr_matrix(TEST)), k=2, min_rating=4)
    with pytest.raises(ValueError, match="shape"):
        Evaluator(sp.csr_matrix((5, 7)), sp.csr_matrix(TEST), k=2)
    with pytest.raises(ValueError, match="k must be"):
        Evaluator(None, sp.csr_matrix(TEST), k=0)
    with pytest.raises(ValueError, match="unknown metric"):
        Evaluator(None, sp.csr_matrix(TEST), metrics=["auc"])
    with pytest.raises(ValueError, match="min_rating"):
        Evaluator(None, sp.csr_matrix(TEST), min_rating=0)


def test_without_train_nothing_is_removed_from_the_relevant_sets(test, popular):
    evaluator = Evaluator(None, test, k=2)
    assert evaluator.relevant_seen_in_train == 0 and evaluator.relevant.nnz == 6


def test_no_evaluable_user_gives_nan(train, popular):
    empty = Interactions(sp.csr_matrix((5, 6), dtype=np.float32), train.users, train.items)
    result = evaluate(popular, train, empty, k=2)
    assert result.users == 0 and result.metrics.pop("coverage") == 0.0  # no lists cover nothing
    assert all(math.isnan(v) for v in result.metrics.values())
    scores = Evaluator(train, empty, metrics=["ndcg", "map"]).score(popular)
    assert all(math.isnan(v) for v in scores.values())


def progress(model, iteration, iterations=4):
    return FitProgress(iteration=iteration, iterations=iterations, elapsed=0.0, model=model, loss=lambda: 0.0)


def test_validation_callback_scores_each_iteration_and_can_stop_training(train, test, popular):
    evaluator = Evaluator(train, test, k=2, metrics=["ndcg"])
    seen = []

    def on_score(iteration, scores):
        seen.append(iteration)
        return iteration >= 2  # e.g. a pruned trial

    callback = evaluator.callback(on_score)
    assert callback(progress(popular, 1)) is False
    assert callback(progress(popular, 2)) is True
    assert seen == [1, 2]
    assert [it for it, _ in callback.history] == [1, 2]
    assert callback.history[0][1] == evaluator.score(popular)


def test_validation_callback_every_n_iterations(train, test, popular):
    callback = Evaluator(train, test, k=2).callback(every=2)
    results = [callback(progress(popular, i)) for i in range(1, 6)]
    assert results == [None] * 5
    assert [it for it, _ in callback.history] == [2, 4]
    with pytest.raises(ValueError, match="every"):
        Evaluator(train, test).callback(every=0)


class LeastPopular(Recommender):
    """Least popular first: a worse model to compare (not a Popular)."""

    def __init__(self) -> None:
        pass

    def _validate_params(self) -> None:
        pass

    def _fit(self, interactions, callback):
        self.popularity_ = np.asarray(interactions.matrix.sum(axis=0), dtype=np.float32).ravel()

    def _score_users(self, users):
        return np.tile(-self.popularity_, (len(users), 1))

    def _history_scores(self, items, values):
        return -self.popularity_

    def _similar(self, items, k):
        raise NotImplementedError


def test_compare_builds_a_report_against_the_popular_baseline(train, test, popular):
    worse = LeastPopular().fit(train)
    report = compare({"reversed": worse, "pop": popular}, train, test, k=2, split={"method": "by hand"})
    assert report.baseline == "pop" and report.names == ["reversed", "pop"]
    assert report["pop"].metrics == evaluate(popular, train, test, k=2).metrics
    lift = report.lift("reversed", "precision")
    assert lift == pytest.approx(
        report["reversed"].metrics["precision"] / report["pop"].metrics["precision"] - 1
    )
    assert report.split == {"method": "by hand"}
    assert compare({"a": popular}, train, test).baseline == "a"
    with pytest.raises(ValueError, match="baseline"):
        compare({"a": popular}, train, test, baseline="b")
    with pytest.raises(ValueError, match="at least one"):
        compare({}, train, test)
    assert compare({"r": worse}, train, test).baseline is None
