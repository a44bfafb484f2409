"""recforge.ALS: the recommender contract for each solver, determinism, fold-in, callbacks,
and the explicit-feedback RMSE floor on ml-100k (the NDCG@10 floors of every model are in
test_floors.py)."""

from __future__ import annotations

import gzip
import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import recforge._numba as nb
from recforge import ALS
from recforge.data.interactions import Interactions
from recforge.kernels import als as K
from recforge.models.base import Recommender
from tests.conftest import dataset_path
from tests.models.contract import RecommenderContract

BAD_PARAMS = [
    {"factors": 0},
    {"factors": 2.5},
    {"regularization": -1.0},
    {"alpha": -0.5},
    {"iterations": -1},
    {"solver": "lu"},
    {"cg_steps": 0},
    {"implicit": "yes"},
    {"nonnegative": 1.5},
    {"regularization_scaling": "sqrt"},
    {"regularization_exponent": -0.5},
    {"unobserved_weight": -1.0},
    {"random_state": "seed"},
    {"num_threads": -2},
    {"dtype": np.int32},
]


class TestALS(RecommenderContract):
    """Two factors: the checkerboard is rank 2; more factors fit its held-out holes."""

    bad_params = BAD_PARAMS

    def make(self):
        return ALS(factors=2, iterations=10, regularization=0.1, random_state=0)


class TestALSCholesky(RecommenderContract):
    def make(self):
        return ALS(factors=2, iterations=10, regularization=0.1, solver="cholesky", random_state=0)


class TestALSNonnegative(RecommenderContract):
    def make(self):
        return ALS(factors=2, iterations=10, regularization=0.1, nonnegative=True, random_state=0)


class TestALSExplicit(RecommenderContract):
    learns_structure = False  # all ratings equal: nothing separates the two halves

    def make(self):
        return ALS(factors=4, iterations=5, implicit=False, regularization=0.1, random_state=0)


def random_matrix(n_users=120, n_items=80, density=0.08, seed=0):
    rng = np.random.default_rng(seed)
    m = sp.random(n_users, n_items, density=density, format="csr", random_state=seed, dtype=np.float32)
    m.data[:] = rng.integers(1, 6, m.nnz)
    return m


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_same_seed_same_factors_whatever_the_threads(solver):
    m = random_matrix()
    a = ALS(factors=16, iterations=4, solver=solver, random_state=7, num_threads=1).fit(m)
    b = ALS(factors=16, iterations=4, solver=solver, random_state=7, num_threads=2).fit(m)
    c = ALS(factors=16, iterations=4, solver=solver, random_state=8, num_threads=1).fit(m)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert not np.array_equal(a.user_factors_, c.user_factors_)
    assert a.user_factors_.dtype == np.float32 and a.item_factors_.dtype == np.float32


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"solver": "cholesky"},
        {"regularization_scaling": "count"},
        {"implicit": False, "regularization": 0.1},
        {"implicit": False, "regularization": 0.1, "regularization_scaling": "count"},
        {"regularization_scaling": "frequency", "regularization_exponent": 0.6, "unobserved_weight": 0.05},
    ],
)
def test_fold_in_equals_a_training_row_solve(params):
    """Folding in a training user's own history gives the exact solve of that user's row
    against the learned item factors (the NumPy twin, with the full Gram)."""
    m = random_matrix()
    model = ALS(factors=12, iterations=3, random_state=0, **params).fit(m)
    Y = model.item_factors_
    implicit = model.implicit
    a0 = model.unobserved_weight
    gram = a0 * (Y.T @ Y) if implicit else np.zeros((12, 12), np.float32)
    expected = np.zeros((m.shape[0], 12))
    lam = K.row_regularization(
        m.indptr, m.data, model.regularization, implicit=implicit, scaling=model.regularization_scaling,
        exponent=model.regularization_exponent, unobserved=a0, other_rows=m.shape[1],
    )  # fmt: skip
    K.als_exact_reference(m.indptr, m.indices, m.data, expected, Y, gram, lam, model.alpha, a0, implicit)
    for u in (0, 5, 17):
        row = m[u]
        folded = model._fold_in(row.indices, row.data)
        np.testing.assert_allclose(folded, expected[u], rtol=2e-3, atol=2e-4 * np.abs(expected[u]).max())
        scores, _ = model.recommend_for_history(row.indices, row.data, k=5)
        assert not np.isin(scores, row.indices).any()


def test_fold_in_nonnegative_is_nonnegative_and_duplicates_add_up():
    m = random_matrix()
    model = ALS(factors=8, iterations=3, nonnegative=True, random_state=0).fit(m)
    x = model._fold_in(np.array([1, 2, 2]), np.array([1.0, 1.0, 2.0]))
    assert (x >= 0).all()
    np.testing.assert_allclose(x, model._fold_in(np.array([1, 2]), np.array([1.0, 3.0])), rtol=1e-6)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_callback_reports_progress_and_can_stop(solver):
    m = random_matrix()
    seen = []

    def callback(progress):
        seen.append((progress.iteration, progress.elapsed, progress.loss()))
        assert progress.model.user_factors_.shape == (m.shape[0], 8)
        return progress.iteration == 4

    ALS(factors=8, iterations=10, solver=solver, random_state=0).fit(m, callback=callback)
    assert [s[0] for s in seen] == [1, 2, 3, 4]
    assert all(b[1] >= a[1] for a, b in itertools.pairwise(seen))
    losses = [s[2] for s in seen]
    assert all(b < a for a, b in itertools.pairwise(losses)), losses


def test_loss_is_the_documented_objective():
    m = random_matrix(40, 30, density=0.2)
    model = ALS(factors=4, iterations=2, alpha=3.0, regularization=0.2, random_state=0).fit(m)
    expected = K.als_loss_reference(
        m.toarray(),
        model.user_factors_,
        model.item_factors_,
        np.full(40, 0.2),
        np.full(30, 0.2),
        3.0,
        1.0,
        True,
    )
    assert model.loss(m) == pytest.approx(expected, rel=1e-6)


def test_frequency_loss_is_the_documented_objective_and_decreases():
    """Rendle et al.'s objective (issue 16), written out densely: stored pairs weigh
    ``c = 1 + alpha r``, the others ``a0``; user ``u`` is regularised by
    ``lam (n_u + a0 n_items) ** nu``, item ``i`` by ``lam (n_i + a0 n_users) ** nu``."""
    m = random_matrix(40, 30, density=0.2)
    params = {"regularization_scaling": "frequency", "regularization_exponent": 0.7, "unobserved_weight": 0.2}
    seen = []
    model = ALS(factors=4, iterations=6, alpha=3.0, regularization=0.05, random_state=0, **params)
    model.fit(m, callback=lambda progress: seen.append(progress.loss()) and None)
    dense = m.toarray()
    R, S = dense.astype(np.float64), model.user_factors_.astype(np.float64) @ model.item_factors_.T
    W = np.where(R != 0, 1 + 3.0 * R, 0.2)
    n_u, n_i = (R > 0).sum(axis=1), (R > 0).sum(axis=0)
    penalty = 0.05 * ((n_u + 0.2 * 30) ** 0.7 @ (model.user_factors_.astype(np.float64) ** 2).sum(axis=1))
    penalty += 0.05 * ((n_i + 0.2 * 40) ** 0.7 @ (model.item_factors_.astype(np.float64) ** 2).sum(axis=1))
    expected = float(np.sum(W * ((R > 0) - S) ** 2)) + penalty
    assert model.loss(m) == pytest.approx(expected, rel=1e-5)
    assert all(b < a for a, b in itertools.pairwise(seen)), seen


def test_rendle_parameters_are_for_implicit_feedback(checkerboard):
    for params in ({"regularization_scaling": "frequency"}, {"unobserved_weight": 0.5}):
        (name,) = params
        with pytest.raises(ValueError, match=f"{name}.*implicit feedback"):
            ALS(implicit=False, **params).fit(checkerboard)


def test_new_parameters_at_their_defaults_change_nothing():
    """``regularization_exponent`` and ``unobserved_weight`` at 1 are today's ALS, bit for bit
    (issue 16): the kernels' ``w = alpha r + (1 - a0)`` and ``a0 G`` are skipped or exact."""
    m = random_matrix()
    for params in ({}, {"solver": "cholesky"}, {"regularization_scaling": "count"}):
        base = ALS(factors=8, iterations=3, random_state=0, **params).fit(m)
        same = ALS(
            factors=8,
            iterations=3,
            random_state=0,
            regularization_exponent=1.0,
            unobserved_weight=1.0,
            **params,
        ).fit(m)
        np.testing.assert_array_equal(base.user_factors_, same.user_factors_)
        other = ALS(factors=8, iterations=3, random_state=0, unobserved_weight=0.5, **params).fit(m)
        assert not np.array_equal(base.user_factors_, other.user_factors_)


def test_explicit_fit_reads_interactions_ratings():
    """An explicit model trains on ``Interactions.ratings`` when present (an implicit one on the
    ``r`` matrix): the same factors as a fit on that matrix directly."""
    m = random_matrix(30, 20, density=0.3)
    ratings = m.copy()
    ratings.data = np.random.default_rng(1).integers(1, 6, ratings.nnz).astype(np.float32)
    both = Interactions.from_csr(m, ratings=ratings)
    params = {"factors": 3, "iterations": 3, "regularization": 0.1, "random_state": 0}
    explicit = ALS(implicit=False, **params)
    np.testing.assert_array_equal(
        explicit.fit(both).user_factors_, explicit.clone().fit(ratings).user_factors_
    )
    implicit = ALS(**params)
    np.testing.assert_array_equal(implicit.fit(both).user_factors_, implicit.clone().fit(m).user_factors_)


def test_zero_iterations_and_empty_rows():
    m = random_matrix()
    m = sp.vstack([m, sp.csr_matrix((1, m.shape[1]), dtype=np.float32)]).tocsr()
    model = ALS(factors=4, iterations=0, random_state=0).fit(m)
    assert model.user_factors_.shape == (m.shape[0], 4)
    model = ALS(factors=4, iterations=2, random_state=0).fit(m)
    assert (model.user_factors_[-1] == 0).all()


@pytest.mark.slow  # compiles the float64 kernels
def test_float64_factors():
    m = random_matrix()
    model = ALS(factors=4, iterations=2, dtype=np.float64, random_state=0).fit(m)
    assert model.user_factors_.dtype == np.float64


def test_singular_explicit_problem_raises_naming_regularization():
    m = random_matrix(density=0.02)
    with pytest.raises(ValueError, match="regularization"):
        ALS(factors=16, iterations=2, implicit=False, regularization=0.0, solver="cholesky").fit(m)


def test_oversubscription_warning_fires_once(monkeypatch):
    monkeypatch.setattr(nb, "_warned", False)
    monkeypatch.setattr(nb, "_blas_threads", lambda: 8)
    monkeypatch.setattr(nb.numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(nb.os, "cpu_count", lambda: 2)
    with pytest.warns(RuntimeWarning, match="oversubscri|could not be pinned"):
        nb.warn_if_oversubscribed()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nb.warn_if_oversubscribed()  # once only


def test_no_warning_when_blas_is_pinned(monkeypatch):
    monkeypatch.setattr(nb, "_warned", False)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    with nb.thread_limits(numba_threads=0, blas_threads=1):
        nb.warn_if_oversubscribed()  # filterwarnings=error: a warning fails the test
    assert nb._warned is False


# explicit accuracy floor on real data -------------------------------------------------------------------
def ml100k(name):
    with gzip.open(dataset_path("ml-100k", f"{name}.gz"), "rt") as fh:
        table = np.loadtxt(fh, dtype=np.int64)
    return sp.csr_matrix(
        (table[:, 2].astype(np.float32), (table[:, 0] - 1, table[:, 1] - 1)), shape=(943, 1682)
    )


@pytest.mark.datasets
def test_ml100k_explicit_rmse_floor():
    """Explicit ALS-WR (rank 10, reg 0.1 scaled by count, as Spark) on ml-100k u1: RMSE on the
    test pairs whose user and item were trained (Spark's coldStartStrategy="drop") is near
    Spark's (about 0.92 with these settings)."""
    train, test = ml100k("u1.base"), ml100k("u1.test")
    model = ALS(
        factors=10, regularization=0.1, iterations=15, implicit=False, solver="cholesky",
        regularization_scaling="count", random_state=0,
    ).fit(train)  # fmt: skip
    test = test.tocoo()
    known = (np.diff(train.indptr)[test.row] > 0) & (np.bincount(train.indices, minlength=1682)[test.col] > 0)
    predicted = np.einsum(
        "ij,ij->i", model.user_factors_[test.row[known]], model.item_factors_[test.col[known]]
    )
    rmse = np.sqrt(np.mean((predicted - test.data[known]) ** 2))
    assert rmse < 0.96


def test_fold_in_after_load_from_memory_mapped_arrays(tmp_path):
    m = random_matrix()
    model = ALS(factors=8, iterations=3, random_state=0).fit(m)
    model.save(tmp_path / "als")
    loaded = Recommender.load(tmp_path / "als", mmap=True)
    history = m[4]
    a = model.recommend_for_history(history.indices, history.data, k=5)
    b = loaded.recommend_for_history(history.indices, history.data, k=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"alpha": 4.0, "regularization": 0.5, "regularization_scaling": "count"},
        {"implicit": False, "regularization": 0.1},
        {"nonnegative": True},
        {"regularization_scaling": "frequency", "regularization_exponent": 0.5, "unobserved_weight": 0.3},
    ],
)
def test_explanations_are_exact_for_every_item(params):
    """The contributions of a history add up to the fold-in's score of *every* item (the
    decomposition of implicit's ``explain``), for long histories with repeats too."""
    m = random_matrix()
    model = ALS(factors=12, iterations=3, random_state=0, **params).fit(m)
    everything = np.arange(m.shape[1])
    for u in (0, 5, 17):
        row = m[u]
        history = np.concatenate([row.indices, row.indices[:2]])
        values = np.concatenate([row.data, [1.0, 2.0]])
        expected = model._history_scores(history, values)
        explanations = model.explain_history(history, values, everything, n=m.shape[1])
        scores = np.array([e.score for e in explanations])
        np.testing.assert_allclose(scores, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
        sums = np.array([e.explained for e in explanations])
        np.testing.assert_allclose(sums, scores, rtol=1e-12, atol=1e-12)
