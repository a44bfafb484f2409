"""BPR: the contract, learning a planted structure, determinism, the callback, fold-in."""

import itertools
from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.models.bpr import BPR
from tests.models.contract import RecommenderContract


class TestBPR(RecommenderContract):
    bad_params: ClassVar[list[dict]] = [
        {"factors": 0},
        {"factors": 2.5},
        {"learning_rate": 0.0},
        {"regularization": -1.0},
        {"iterations": 0},
        {"random_state": "seed"},
        {"num_threads": -1},
        {"deterministic": "yes"},
        {"dtype": np.int32},
    ]

    def make(self):
        return BPR(factors=8, learning_rate=0.05, iterations=200, random_state=0)


def planted(seed=0, n_users=240, n_items=120, groups=4, per_user=14, held_out=2):
    """Users and items in ``groups`` groups; a user's items are 90% from its own group.
    Returns the training CSR, each user's held-out item and the group labels."""
    rng = np.random.default_rng(seed)
    user_group = np.arange(n_users) % groups
    item_group = np.arange(n_items) % groups
    rows, cols, test = [], [], []
    for u in range(n_users):
        own = np.flatnonzero(item_group == user_group[u])
        other = np.flatnonzero(item_group != user_group[u])
        n_own = round(per_user * 0.9)
        items = np.concatenate(
            [rng.choice(own, n_own, replace=False), rng.choice(other, per_user - n_own, replace=False)]
        )
        keep = items[held_out:]
        rows += [u] * len(keep)
        cols += keep.tolist()
        test.append(items[0])
    train = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    return train, np.array(test), user_group, item_group


def held_out_auc(model, train, test_items, seed=1):
    """Fraction of (user, held-out item, random unseen item) triples ranked correctly."""
    rng = np.random.default_rng(seed)
    seen = train.toarray() > 0
    scores = model.user_factors_ @ model.item_factors_.T
    users = np.arange(train.shape[0])
    wins = []
    for _ in range(20):
        negatives = rng.integers(0, train.shape[1], len(users))
        valid = ~seen[users, negatives] & (negatives != test_items)
        wins.append((scores[users, test_items] > scores[users, negatives])[valid])
    return np.concatenate(wins).mean()


@pytest.mark.parametrize("deterministic", [False, True])
def test_learns_planted_structure(deterministic):
    train, test_items, user_group, item_group = planted()
    model = BPR(factors=16, learning_rate=0.05, iterations=60, random_state=0, deterministic=deterministic)
    model.fit(train)
    assert held_out_auc(model, train, test_items) > 0.8
    # similar items (latent part only) come from the item's own group
    ids, _ = model.similar_items(np.arange(20), k=5)
    assert (item_group[ids] == item_group[np.arange(20)][:, None]).mean() > 0.8


def test_deterministic_mode_does_not_depend_on_thread_count():
    train, *_ = planted()
    fits = [
        BPR(factors=8, iterations=5, random_state=3, deterministic=True, num_threads=t).fit(train)
        for t in (1, 2)
    ]
    np.testing.assert_array_equal(fits[0].user_factors_, fits[1].user_factors_)
    np.testing.assert_array_equal(fits[0].item_factors_, fits[1].item_factors_)
    other_seed = BPR(factors=8, iterations=5, random_state=4, deterministic=True).fit(train)
    assert not np.array_equal(fits[0].item_factors_, other_seed.item_factors_)


def test_single_thread_hogwild_is_reproducible_and_float64_works():
    train, *_ = planted()
    a = BPR(factors=8, iterations=3, random_state=1, num_threads=1).fit(train)
    b = BPR(factors=8, iterations=3, random_state=1, num_threads=1).fit(train)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    c = BPR(factors=8, iterations=3, random_state=1, dtype="float64").fit(train)
    assert c.user_factors_.dtype == np.float64 and c.item_factors_.shape == (120, 9)
    assert (c.user_factors_[:, -1] == 1).all()


def test_callback_reports_progress_loss_and_can_stop():
    train, *_ = planted()
    seen = []

    def callback(progress):
        seen.append((progress.iteration, progress.iterations, progress.elapsed, progress.loss()))
        assert progress.model.user_factors_.shape == (240, 9)
        return progress.iteration == 10

    with_loss = BPR(factors=8, learning_rate=0.1, iterations=20, random_state=2, deterministic=True)
    with_loss.fit(train, callback=callback)
    assert [s[0] for s in seen] == list(range(1, 11)) and seen[0][1] == 20
    assert all(b[2] >= a[2] for a, b in itertools.pairwise(seen))
    losses = [s[3] for s in seen]
    assert 0.6 < losses[0] < 0.75 and losses[-1] < 0.5 * losses[0], losses  # ln 2 = 0.69: chance
    # asking for the loss does not change the training
    plain = BPR(factors=8, learning_rate=0.1, iterations=10, random_state=2, deterministic=True).fit(train)
    np.testing.assert_array_equal(plain.item_factors_, with_loss.item_factors_)


def test_fold_in_is_the_optimum_of_the_user_objective():
    train, test_items, user_group, item_group = planted()
    model = BPR(factors=8, learning_rate=0.05, iterations=30, random_state=0).fit(train)
    history = train[3].indices
    w = model._fold_in(history, np.ones(len(history), np.float32))
    assert w[-1] == 1.0
    np.testing.assert_array_equal(w, model._fold_in(history, np.ones(len(history), np.float32)))
    V = model.item_factors_.astype(np.float64)
    others = np.setdiff1d(np.arange(120), history)

    def objective(w):
        x = (V[history] @ w)[:, None] - (V[others] @ w)[None, :]
        return -np.logaddexp(0, -x).mean() - 0.5 * model.regularization * w[:-1] @ w[:-1]

    best = objective(w.astype(np.float64))
    rng = np.random.default_rng(0)
    for _ in range(20):
        step = np.append(rng.normal(size=8) * 1e-2, 0.0)
        assert objective(w + step) <= best + 1e-9
    # the folded-in user gets items of its own group, like the trained user
    ids, _ = model.recommend_for_history(history, k=5)
    assert (item_group[ids] == user_group[3]).mean() >= 0.8


def test_fold_in_edge_cases():
    train, *_ = planted()
    model = BPR(factors=4, iterations=2, random_state=0).fit(train)
    w = model._fold_in(np.array([], dtype=np.int32), np.array([], dtype=np.float32))
    np.testing.assert_array_equal(w, [0, 0, 0, 0, 1])  # no history: rank by item bias
    ignored = model._fold_in(np.array([5, 6]), np.array([0.0, -1.0], dtype=np.float32))
    np.testing.assert_array_equal(ignored, w)
