"""The one ALS solve path (issue 13): the half-step's settings and Gram, the kernel dispatch,
the failure message and the initial factors that local training, fold-in and Spark share."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recforge import ALS
from recforge.kernels import als as K
from recforge.models.als_solve import HalfStep, check_failures, initial_factors, solve_rows
from tests.kernels.test_als_kernels import problem


def test_the_step_carries_the_hyperparameters():
    model = ALS(
        factors=6, regularization=0.5, alpha=3, solver="cholesky", cg_steps=4, implicit=np.True_,
        regularization_scaling="count", dtype="float64",
    )  # fmt: skip
    step = HalfStep.of(model)
    assert step == HalfStep(
        factors=6, dtype=np.dtype(np.float64), regularization=0.5, alpha=3.0, implicit=True,
        scaling="count", solver="cholesky", cg_steps=4, nonnegative=False, exponent=1.0, unobserved=1.0,
    )  # fmt: skip
    assert type(step.implicit) is bool and type(step.alpha) is float  # one compiled kernel each
    assert step.gram is None and step.rotation is None and step.other_rows is None
    assert step.initial_scale is None
    assert HalfStep.of(ALS()).warm_start
    assert not HalfStep.of(ALS(solver="cholesky")).warm_start
    assert not HalfStep.of(ALS(nonnegative=True)).warm_start


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_with_gram_is_the_eigenbasis_the_kernels_rotate_into(dtype):
    _, X, Y = problem(factors=12, dtype=dtype)
    step = HalfStep.of(ALS(factors=12, dtype=dtype)).with_gram(K.gram_matrix(Y))
    Yr, Xr = Y.copy(), X.copy()
    eigenvalues = K.rotate_to_gram_eigenbasis(Yr, Xr)
    assert step.gram is not None and step.rotation is not None
    assert step.gram.dtype == dtype and step.rotation.dtype == dtype
    np.testing.assert_array_equal(step.gram, eigenvalues)
    K.rotate_in_place(step.rotation, Y, X)
    np.testing.assert_array_equal(Y, Yr)
    np.testing.assert_array_equal(X, Xr)
    # NNLS keeps the full Gram (Y^T Y as computed in Y's dtype)
    nnls = HalfStep.of(ALS(factors=12, nonnegative=True, dtype=dtype)).with_gram(K.gram_matrix(Y))
    assert nnls.rotation is None
    np.testing.assert_array_equal(nnls.kernel_gram, Y.T @ Y)


def test_explicit_steps_have_no_gram_and_implicit_ones_need_it():
    explicit = HalfStep.of(ALS(factors=5, implicit=False)).with_gram(None)
    np.testing.assert_array_equal(explicit.kernel_gram, np.zeros(5, np.float32))
    nnls = HalfStep.of(ALS(factors=5, implicit=False, nonnegative=True))
    np.testing.assert_array_equal(nnls.kernel_gram, np.zeros((5, 5), np.float32))
    implicit = HalfStep.of(ALS(factors=5))
    with pytest.raises(ValueError, match="with_gram"):
        implicit.kernel_gram
    with pytest.raises(ValueError, match="implicit feedback"):
        implicit.with_gram(None)
    with pytest.raises(ValueError, match="implicit feedback"):
        explicit.with_gram(np.eye(5))


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"solver": "cholesky"},
        {"nonnegative": True},
        {"implicit": False},
        {"implicit": False, "nonnegative": True},
    ],
    ids=["cg", "exact", "nnls", "cg-explicit", "nnls-explicit"],
)
def test_solve_rows_runs_the_kernel_the_step_names(params):
    m, X, Y = problem(density=0.3, factors=10, seed=2)
    X = np.abs(X) * 0.1
    model = ALS(factors=10, regularization=0.1, alpha=2.0, regularization_scaling="count", **params)
    step = HalfStep.of(model)
    step = step.with_gram(K.gram_matrix(Y) if step.implicit else None)
    if step.rotation is not None:
        K.rotate_in_place(step.rotation, Y, X)
    blocks = K.row_blocks(m.indptr, 4)
    got, expected = X.copy(), X.copy()
    failures = solve_rows(step, m.indptr, m.indices, m.data, got, Y, blocks)
    args = (
        m.indptr,
        m.indices,
        m.data,
        expected,
        Y,
        step.kernel_gram,
        K.row_regularization(m.indptr, m.data, 0.1, implicit=model.implicit, scaling="count"),
        np.float32(2.0),
        np.float32(1.0),
    )
    if model.nonnegative:
        expected_failures = K.als_nnls(*args, model.implicit, blocks)
    elif model.solver == "cg":
        K.als_cg(*args, model.implicit, 3, blocks)
        expected_failures = 0
    else:
        expected_failures = K.als_exact(*args, model.implicit, blocks)
    assert failures == expected_failures == 0
    np.testing.assert_array_equal(got, expected)


def test_failures_name_the_solver_and_regularization():
    check_failures(0, HalfStep.of(ALS()))
    with pytest.raises(ValueError, match=r"normal equations of 3 rows are singular; increase regularization"):
        check_failures(3, HalfStep.of(ALS(solver="cholesky")))
    with pytest.raises(ValueError, match=r"did not converge on 2 rows; increase regularization"):
        check_failures(2, HalfStep.of(ALS(nonnegative=True)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initial_factors_are_what_a_fit_starts_from(dtype):
    users, items = initial_factors(np.random.default_rng(4), 7, 5, 3, dtype)
    rng = np.random.default_rng(4)
    np.testing.assert_array_equal(users, rng.random((7, 3), dtype=dtype) * dtype(0.01))
    np.testing.assert_array_equal(items, rng.random((5, 3), dtype=dtype) * dtype(0.01))
    assert users.dtype == items.dtype == dtype
    assert users.min() >= 0 and users.max() < 0.01
    model = ALS(factors=3, iterations=0, random_state=4, dtype=dtype).fit(sp.random(7, 5, 0.5, format="csr"))
    np.testing.assert_array_equal(model.user_factors_, users)
    np.testing.assert_array_equal(model.item_factors_, items)


def test_frequency_scaling_flows_through_the_step():
    """Rendle et al.'s regularisation (issue 16): ``a0 G`` as the kernels' Gram, the rows'
    ``lam * (n + a0 n_other) ** nu`` and the paper's initial scale, all from the ALS."""
    m, X, Y = problem(factors=8, seed=3)
    model = ALS(
        factors=8, regularization=0.3, regularization_scaling="frequency", regularization_exponent=0.5,
        unobserved_weight=0.1,
    )  # fmt: skip
    step = HalfStep.of(model)
    assert (step.scaling, step.exponent, step.unobserved) == ("frequency", 0.5, 0.1)
    assert step.initial_scale == pytest.approx(0.1 / np.sqrt(8))
    with pytest.raises(ValueError, match="size of the other side"):
        step.row_regularization(m.indptr, m.data)
    step = step.with_gram(K.gram_matrix(Y), other_rows=m.shape[1])
    np.testing.assert_allclose(step.gram, np.linalg.eigvalsh(0.1 * (Y.T @ Y).astype(np.float64)), rtol=1e-4)
    n = np.diff(m.indptr)
    np.testing.assert_allclose(
        step.row_regularization(m.indptr, m.data), 0.3 * (n + 0.1 * m.shape[1]) ** 0.5, rtol=1e-6
    )
    nnls = HalfStep.of(ALS(factors=8, nonnegative=True, unobserved_weight=0.1)).with_gram(K.gram_matrix(Y))
    np.testing.assert_allclose(nnls.kernel_gram, 0.1 * (Y.T @ Y), rtol=1e-5)
    users, items = initial_factors(np.random.default_rng(0), 2000, 10, 8, np.float32, step.initial_scale)
    assert users.std() == pytest.approx(0.1 / np.sqrt(8), rel=0.05) and abs(users.mean()) < 0.005
