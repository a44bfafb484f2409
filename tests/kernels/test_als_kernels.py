"""ALS kernels against their NumPy twins (and scipy's NNLS), on small random problems that
exercise both exact paths (Woodbury for short rows, Cholesky for long ones), padded widths
(factors not a multiple of the SIMD chunk), count scaling and explicit ratings."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.kernels import als as K

f32 = np.float32


def problem(n_rows=40, n_cols=120, density=0.25, factors=24, seed=0, dtype=np.float32):
    """A CSR with ratings 1..5 (rows of 0 to ~2x density entries, one empty row) and factors."""
    rng = np.random.default_rng(seed)
    m = sp.random(n_rows, n_cols, density=density, format="lil", random_state=seed, dtype=np.float32)
    m[3, :] = 0  # an empty row
    m = m.tocsr()
    m.eliminate_zeros()
    m.data[:] = rng.integers(1, 6, m.nnz)
    m.sort_indices()
    X = rng.standard_normal((n_rows, factors)).astype(dtype)
    Y = (rng.standard_normal((n_cols, factors)) / np.sqrt(factors)).astype(dtype)
    return m, X, Y


def blocks(m, n=5):
    return K.row_blocks(m.indptr, n)


def lam(m, regularization, scale=False, implicit=True, dtype=np.float32):
    """The rows' regularisation: constant, or by count (``scale``)."""
    scaling = "count" if scale else "none"
    return K.row_regularization(
        m.indptr, m.data, regularization, implicit=implicit, scaling=scaling, dtype=dtype
    )


CASES = [
    pytest.param(
        implicit, scale, density, factors, id=f"{'imp' if implicit else 'exp'}-{scale}-d{density}-f{factors}"
    )
    for implicit in (True, False)
    for scale in (False, True)
    for density, factors in ((0.08, 24), (0.6, 24), (0.3, 64), (0.5, 10))
]


@pytest.mark.parametrize(("implicit", "scale", "density", "factors"), CASES)
def test_exact_matches_reference(implicit, scale, density, factors):
    m, X, Y = problem(density=density, factors=factors)
    gram_diag = K.rotate_to_gram_eigenbasis(Y, X) if implicit else np.zeros(factors, f32)
    fast, slow = X.copy(), X.copy()
    lams = lam(m, 0.1, scale, implicit)
    failures = K.als_exact(
        m.indptr, m.indices, m.data, fast, Y, gram_diag, lams, f32(2.0), f32(1.0), implicit, blocks(m)
    )
    K.als_exact_reference(m.indptr, m.indices, m.data, slow, Y, gram_diag, lams, 2.0, 1.0, implicit)
    assert failures == 0
    np.testing.assert_allclose(fast, slow, rtol=2e-4, atol=2e-4 * np.abs(slow).max())
    assert (fast[3] == 0).all()


@pytest.mark.parametrize(("implicit", "scale", "density", "factors"), CASES)
def test_cg_matches_reference(implicit, scale, density, factors):
    m, X, Y = problem(density=density, factors=factors, seed=1)
    gram_diag = K.rotate_to_gram_eigenbasis(Y, X) if implicit else np.zeros(factors, f32)
    fast, slow = X.copy(), X.copy()
    lams = lam(m, 0.1, scale, implicit)
    K.als_cg(
        m.indptr, m.indices, m.data, fast, Y, gram_diag, lams, f32(2.0), f32(1.0), implicit, 3, blocks(m)
    )
    K.als_cg_reference(m.indptr, m.indices, m.data, slow, Y, gram_diag, lams, 2.0, 1.0, implicit, 3)
    np.testing.assert_allclose(fast, slow, rtol=1e-3, atol=1e-4 * np.abs(slow).max())


def test_reference_twins_accept_a_full_gram_and_agree_with_the_rotated_problem():
    """Rotating both sides into the Gram's eigenbasis solves the same problem: the solution
    rotates with the basis (the premise of the diagonal-Gram kernels)."""
    m, X, Y = problem(density=0.3, factors=16)
    full = X.copy()
    K.als_exact_reference(m.indptr, m.indices, m.data, full, Y, Y.T @ Y, lam(m, 0.1), 2.0, 1.0, True)
    Yr, Xr = Y.copy(), X.copy()
    gram_diag = K.rotate_to_gram_eigenbasis(Yr, Xr)
    K.als_exact(
        m.indptr, m.indices, m.data, Xr, Yr, gram_diag, lam(m, 0.1), f32(2.0), f32(1.0), True, blocks(m)
    )
    np.testing.assert_allclose(Xr @ Yr.T, full @ Y.T, rtol=1e-3, atol=1e-4)


def test_rotation_diagonalises_the_gram_and_keeps_products():
    _, X, Y = problem(factors=12)
    before = X @ Y.T
    eigenvalues = K.rotate_to_gram_eigenbasis(Y, X, block=7)  # several blocks
    gram = Y.T @ Y
    np.testing.assert_allclose(np.diag(gram), eigenvalues, rtol=1e-4, atol=1e-4)
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-4 * np.abs(gram).max()
    np.testing.assert_allclose(X @ Y.T, before, rtol=1e-4, atol=1e-4)


def test_cg_converges_to_the_exact_solution():
    m, X, Y = problem(density=0.3, factors=16)
    gram_diag = K.rotate_to_gram_eigenbasis(Y, X)
    exact, cg = X.copy(), X.copy()
    args = (lam(m, 0.1), f32(2.0), f32(1.0), True)
    K.als_exact(m.indptr, m.indices, m.data, exact, Y, gram_diag, *args, blocks(m))
    K.als_cg(m.indptr, m.indices, m.data, cg, Y, gram_diag, *args, 40, blocks(m))
    np.testing.assert_allclose(cg, exact, rtol=1e-3, atol=1e-4 * np.abs(exact).max())
    few = X.copy()
    K.als_cg(m.indptr, m.indices, m.data, few, Y, gram_diag, *args, 2, blocks(m))
    assert np.abs(few - exact).max() > 1e-2 * np.abs(exact).max()  # two steps are not enough


def test_half_steps_decrease_the_loss():
    m, X, Y = problem(density=0.2, factors=8, seed=3)
    Ciu = m.T.tocsr()
    X *= 0.1
    user_lam, item_lam = lam(m, 0.1), lam(Ciu, 0.1)
    losses = [K.als_loss(m.indptr, m.indices, m.data, X, Y, user_lam, item_lam, 2.0, 1.0, True)]
    for _ in range(3):
        for rows, A, B in ((m, X, Y), (Ciu, Y, X)):
            d = K.rotate_to_gram_eigenbasis(B, A)
            K.als_cg(
                rows.indptr,
                rows.indices,
                rows.data,
                A,
                B,
                d,
                lam(rows, 0.1),
                f32(2.0),
                f32(1.0),
                True,
                3,
                blocks(rows),
            )
            losses.append(K.als_loss(m.indptr, m.indices, m.data, X, Y, user_lam, item_lam, 2.0, 1.0, True))
    assert all(b < a for a, b in itertools.pairwise(losses)), losses


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("scale", [False, True])
def test_nnls_matches_scipy(implicit, scale):
    m, X, Y = problem(density=0.3, factors=12, seed=2)
    gram = (Y.T @ Y) if implicit else np.zeros((12, 12), f32)
    fast, slow = X.copy(), X.copy()
    lams = lam(m, 0.1, scale, implicit)
    failures = K.als_nnls(
        m.indptr, m.indices, m.data, fast, Y, gram, lams, f32(2.0), f32(1.0), implicit, blocks(m)
    )
    K.als_nnls_reference(m.indptr, m.indices, m.data, slow, Y, gram, lams, 2.0, 1.0, implicit)
    assert failures == 0
    assert (fast >= 0).all()
    assert 0.2 < (fast == 0).mean() < 0.8  # the constraint binds on part of the coordinates
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("scale", [False, True])
def test_loss_matches_dense_twin(implicit, scale):
    m, X, Y = problem(density=0.3, factors=6)
    mt = m.T.tocsr()
    user_lam, item_lam = lam(m, 0.3, scale, implicit, np.float64), lam(mt, 0.3, scale, implicit, np.float64)
    fast = K.als_loss(m.indptr, m.indices, m.data, X, Y, user_lam, item_lam, 2.0, 1.0, implicit)
    slow = K.als_loss_reference(m.toarray(), X, Y, user_lam, item_lam, 2.0, 1.0, implicit)
    assert fast == pytest.approx(slow, rel=1e-9)


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("scale", [False, True])
def test_loss_parts_of_row_blocks_add_up_to_the_loss(implicit, scale):
    """Spark's per-iteration loss (issue 19): user blocks with their entries, item blocks with
    their penalty only, and the Gram product for implicit feedback."""
    m, X, Y = problem(density=0.3, factors=6)
    t = m.T.tocsr()
    user_lam, item_lam = lam(m, 0.3, scale, implicit, np.float64), lam(t, 0.3, scale, implicit, np.float64)
    unobserved = 1.5
    total = sum(
        K.als_loss_part(b.indptr, b.indices, b.data, X[rows], Y, user_lam[rows], 2.0, unobserved, implicit)
        for rows, b in ((r, m[r]) for r in np.array_split(np.arange(m.shape[0]), 3))
    )
    total += sum(
        K.als_loss_part(
            b.indptr, b.indices, b.data, Y[rows], X, item_lam[rows], 2.0, unobserved, implicit, entries=False
        )
        for rows, b in ((r, t[r]) for r in np.array_split(np.arange(t.shape[0]), 2))
    )
    if implicit:
        total += unobserved * float(np.sum((X.T.astype(np.float64) @ X) * (Y.T.astype(np.float64) @ Y)))
    whole = K.als_loss(m.indptr, m.indices, m.data, X, Y, user_lam, item_lam, 2.0, unobserved, implicit)
    assert total == pytest.approx(whole, rel=1e-9)


def test_singular_systems_are_reported():
    """Explicit ratings without regularisation: a row with fewer ratings than factors has a
    singular system; the kernel says so instead of returning garbage silently."""
    m, X, Y = problem(density=0.05, factors=24)
    failures = K.als_exact(
        m.indptr,
        m.indices,
        m.data,
        X,
        Y,
        np.zeros(24, f32),
        lam(m, 0.0),
        f32(1.0),
        f32(1.0),
        False,
        blocks(m),
    )
    assert failures > 0


def test_row_blocks_cover_rows_and_isolate_heavy_ones():
    indptr = np.cumsum([0, 1, 1, 1, 500, 1, 1, 1, 1])
    b = K.row_blocks(indptr, 4, row_cost=1)
    assert b[0] == 0 and b[-1] == len(indptr) - 1 and (np.diff(b) > 0).all()
    heavy = np.searchsorted(b, 3, side="right") - 1
    assert b[heavy] <= 3 < b[heavy + 1]
    assert K.row_blocks(np.zeros(1, np.int64), 4).tolist() == [0]


def test_row_flops():
    indptr = np.array([0, 2, 2, 100])
    cg = K.row_flops(indptr, 8, "cg", cg_steps=3)
    assert cg == pytest.approx(4 * (4 * 2 * 8 + 16) + 240 + 4 * (4 * 98 * 8 + 16) + 240)
    exact = K.row_flops(indptr, 8, "exact")
    assert exact == pytest.approx((4 * 8 + 8 / 3 + 64) + (98 * 64 + 2 * 98 * 8 + 512 / 3 + 128))


def test_kernels_run_without_the_jit():
    """``NUMBA_DISABLE_JIT=1`` turns every kernel into plain Python: they must still agree with
    their twins (how kernels are debugged)."""
    code = """
import numpy as np
from tests.kernels.test_als_kernels import problem, blocks, lam
from recforge.kernels import als as K
from recforge._numba import JIT_DISABLED
assert JIT_DISABLED
m, X, Y = problem(n_rows=6, n_cols=20, density=0.4, factors=4)
d = K.rotate_to_gram_eigenbasis(Y, X)
lams = lam(m, 0.1, True)
for fn, ref, extra in ((K.als_cg, K.als_cg_reference, (3,)), (K.als_exact, K.als_exact_reference, ())):
    a, b = X.copy(), X.copy()
    fn(m.indptr, m.indices, m.data, a, Y, d, lams, np.float32(2.0), np.float32(0.5), True, *extra, blocks(m))
    ref(m.indptr, m.indices, m.data, b, Y, d, lams, 2.0, 0.5, True, *extra)
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
a = X.copy()
args = (lam(m, 0.1), np.float32(2.0), np.float32(1.0), True, blocks(m))
K.als_nnls(m.indptr, m.indices, m.data, a, Y, Y.T @ Y, *args)
assert (a >= 0).all()
import recforge
model = recforge.ALS(factors=4, iterations=2, random_state=0).fit(m)
assert np.isfinite(model.user_factors_).all()
print("ok")
"""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=f"{root / 'src'}{os.pathsep}{root}")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("kind", ["cg", "exact", "nnls"])
def test_rows_do_not_depend_on_blocks_threads_or_addresses(kind):
    """A row's result is bit-for-bit the same whatever block holds it, the thread that runs it
    and where the scratch lands in memory (the padded arenas; see ``_cg_block``)."""
    import numba

    m, X, Y = problem(n_rows=300, n_cols=150, density=0.12, factors=16)
    d = K.rotate_to_gram_eigenbasis(Y, X)
    G = Y.T @ Y

    def run(threads, n_blocks):
        A = X.copy()
        previous = numba.get_num_threads()
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            with numba.parallel_chunksize(1):
                b = K.row_blocks(m.indptr, n_blocks)
                args = (lam(m, 0.01), f32(1.0), f32(1.0), True)
                if kind == "cg":
                    K.als_cg(m.indptr, m.indices, m.data, A, Y, d, *args, 3, b)
                elif kind == "exact":
                    K.als_exact(m.indptr, m.indices, m.data, A, Y, d, *args, b)
                else:
                    K.als_nnls(m.indptr, m.indices, m.data, A, Y, G, *args, b)
        finally:
            numba.set_num_threads(previous)
        return A

    base = run(1, 1)
    for _ in range(3):
        for threads, n_blocks in ((2, 3), (1, 50), (2, 300)):
            np.testing.assert_array_equal(run(threads, n_blocks), base)


# the unobserved weight and frequency scaling (Rendle et al. 2022; issue 16) -----------------------
def test_row_regularization_counts_each_rows_entries():
    m, _, _ = problem(density=0.3)
    m.data[::7] *= -1  # some negative feedback: not counted for implicit feedback
    dense = m.toarray()
    positives, stored = (dense > 0).sum(axis=1), (dense != 0).sum(axis=1)
    R = K.row_regularization
    np.testing.assert_array_equal(R(m.indptr, m.data, 0.5, implicit=True), np.full(40, f32(0.5)))
    np.testing.assert_array_equal(
        R(m.indptr, m.data, 0.5, implicit=True, scaling="count"), f32(0.5) * positives
    )
    np.testing.assert_array_equal(
        R(m.indptr, m.data, 0.5, implicit=False, scaling="count"), f32(0.5) * stored
    )
    frequency = R(
        m.indptr,
        m.data,
        0.5,
        implicit=True,
        scaling="frequency",
        exponent=0.7,
        unobserved=0.01,
        other_rows=120,
    )
    np.testing.assert_allclose(frequency, 0.5 * (positives + 0.01 * 120) ** 0.7, rtol=1e-6)
    with pytest.raises(ValueError, match="scaling"):
        R(m.indptr, m.data, 0.5, implicit=True, scaling="sqrt")


def dense_row_solution(m, Y, lams, alpha, unobserved):
    """Each row's minimiser of the implicit objective written out densely: weights ``c`` on
    stored entries and ``unobserved`` everywhere else, ``lam_u |x|^2`` (independent of (1))."""
    R = m.toarray().astype(np.float64)
    W = np.where(R != 0, 1 + alpha * np.abs(R), unobserved)
    P = (R > 0).astype(np.float64)
    Y64 = Y.astype(np.float64)
    X = np.zeros((R.shape[0], Y.shape[1]))
    for u in range(R.shape[0]):
        if not (R[u] != 0).any():
            continue
        A = (Y64 * W[u][:, None]).T @ Y64 + lams[u] * np.eye(Y.shape[1])
        X[u] = np.linalg.solve(A, (Y64 * (W[u] * P[u])[:, None]).sum(axis=0))
    return X


@pytest.mark.parametrize("unobserved", [0.05, 1.0, 2.5])
@pytest.mark.parametrize("kind", ["exact", "cg", "nnls"])
@pytest.mark.parametrize("density", [0.05, 0.5])  # short rows (Woodbury) and long ones
def test_unobserved_weight_solves_the_weighted_objective(kind, unobserved, density):
    m, X, Y = problem(density=density, factors=12, seed=5)
    m.data[::5] *= -1  # negative feedback too
    lams = K.row_regularization(
        m.indptr, m.data, 0.2, implicit=True, scaling="frequency", exponent=0.5, unobserved=unobserved,
        other_rows=m.shape[1],
    )  # fmt: skip
    expected = dense_row_solution(m, Y, lams, 2.0, unobserved)
    gram = unobserved * K.gram_matrix(Y)
    if kind == "nnls":
        got = X.copy()
        K.als_nnls(
            m.indptr,
            m.indices,
            m.data,
            got,
            Y,
            gram.astype(f32),
            lams,
            f32(2.0),
            f32(unobserved),
            True,
            blocks(m),
        )
        slow = X.copy()
        K.als_nnls_reference(m.indptr, m.indices, m.data, slow, Y, gram, lams, 2.0, unobserved, True)
        assert (got >= 0).all()
        np.testing.assert_allclose(got, slow, rtol=1e-3, atol=1e-4)
        return
    eigenvalues, Q = K.gram_eigenbasis(gram, f32)
    Yr, got = Y @ Q, X @ Q
    args = (m.indptr, m.indices, m.data, got, Yr, eigenvalues, lams, f32(2.0), f32(unobserved), True)
    if kind == "exact":
        assert K.als_exact(*args, blocks(m)) == 0
    else:
        for _ in range(10):  # restarted CG, to convergence (small weights condition A badly)
            K.als_cg(*args, 12, blocks(m))
    np.testing.assert_allclose(got @ Q.T, expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max())


@pytest.mark.parametrize("unobserved", [0.01, 3.0])
def test_loss_with_unobserved_weight_matches_dense_twin(unobserved):
    m, X, Y = problem(density=0.3, factors=6, seed=4)
    mt = m.T.tocsr()
    frequency = {"implicit": True, "scaling": "frequency", "exponent": 0.8, "unobserved": unobserved}
    user_lam = K.row_regularization(m.indptr, m.data, 0.3, other_rows=120, dtype=np.float64, **frequency)
    item_lam = K.row_regularization(mt.indptr, mt.data, 0.3, other_rows=40, dtype=np.float64, **frequency)
    fast = K.als_loss(m.indptr, m.indices, m.data, X, Y, user_lam, item_lam, 2.0, unobserved, True)
    slow = K.als_loss_reference(m.toarray(), X, Y, user_lam, item_lam, 2.0, unobserved, True)
    assert fast == pytest.approx(slow, rel=1e-9)
