"""BPR kernels against their slow twins: same draws, same updates, any thread count."""

import numpy as np
import pytest
import scipy.sparse as sp

from recforge._numba import thread_limits
from recforge.kernels import bpr as K


@pytest.fixture
def data():
    """40 users x 25 items, sorted CSR; user 0 has every item, users 1 and 2 none."""
    m = sp.random(40, 25, density=0.25, random_state=3, format="csr", dtype=np.float32)
    m = m.tolil()
    m[0, :] = 1.0
    m[1, :] = 0.0
    m[2, :] = 0.0
    m = sp.csr_matrix(m)
    m.eliminate_zeros()
    m.sort_indices()
    row = np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))
    return m.indptr, m.indices, row


def factors(n, width, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return ((rng.random((n, width)) - 0.5) / 4).astype(dtype)


def user_item_factors(dtype=np.float32):
    X, Y = factors(40, 9, 0, dtype), factors(25, 9, 1, dtype)
    X[:, -1] = 1
    return X, Y


def test_splitmix_matches_reference():
    state_k, state_r = np.uint64(12345), 12345
    for _ in range(100):
        state_k, z_k = K._splitmix64(np.uint64(state_k))
        state_r, z_r = K._splitmix64_reference(state_r)
        assert int(z_k) == z_r and int(state_k) == state_r
        assert K._bounded(np.uint64(z_k), 1000) == K._bounded_reference(z_r, 1000) < 1000


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hogwild_epoch_matches_reference_on_one_thread(data, dtype):
    indptr, indices, row = data
    X1, Y1 = user_item_factors(dtype)
    X2, Y2 = X1.copy(), Y1.copy()
    seeds = np.array([7, 11, 13], dtype=np.uint64)  # three streams, run in order on one thread
    lr, reg = dtype(0.05), dtype(0.01)
    samples = 3 * len(indices) + 5  # several batches per stream, uneven split
    with thread_limits(1):
        skipped = K.bpr_epoch_hogwild(indptr, indices, row, X1, Y1, lr, reg, seeds, samples)
    skipped_ref = K.bpr_epoch_hogwild_reference(indptr, indices, row, X2, Y2, 0.05, 0.01, seeds, samples)
    assert skipped == skipped_ref > 0  # user 0 has every item: its triples are skipped
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(X1, X2, atol=tol)
    np.testing.assert_allclose(Y1, Y2, atol=tol)
    assert (X1[:, -1] == 1).all()
    assert not np.allclose(Y1, user_item_factors(dtype)[1])  # it did move


def blocks(n_users, n_items, n_blocks, seed):
    rng = np.random.default_rng(seed)
    user_block = np.empty(n_users, np.int64)
    user_block[rng.permutation(n_users)] = np.arange(n_users) * n_blocks // n_users
    block_items = rng.permutation(n_items)
    item_block = np.empty(n_items, np.int64)
    item_block[block_items] = np.arange(n_items) * n_blocks // n_items
    block_ptr = np.searchsorted(np.arange(n_items) * n_blocks // n_items, np.arange(n_blocks + 1))
    return user_block, item_block, block_items, block_ptr


def test_group_by_cell_matches_reference(data):
    indptr, indices, row = data
    user_block, item_block, _, _ = blocks(40, 25, 4, 0)
    got = K.group_by_cell(row, indices, user_block, item_block, 4)
    want = K.group_by_cell_reference(row, indices, user_block, item_block, 4)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    cells = user_block[row[got[1]]] * 4 + item_block[indices[got[1]]]
    assert (np.diff(cells) >= 0).all()


def test_blocked_epoch_matches_reference_and_ignores_thread_count(data):
    indptr, indices, row = data
    n_blocks = 3
    user_block, item_block, block_items, block_ptr = blocks(40, 25, n_blocks, 1)
    cell_ptr, cell_nnz = K.group_by_cell(row, indices, user_block, item_block, n_blocks)
    seeds = np.arange(100, 100 + n_blocks * n_blocks, dtype=np.uint64)
    args = (cell_ptr, cell_nnz, block_ptr, block_items, seeds)
    results = []
    for threads in (1, 2):
        X, Y = user_item_factors()
        with thread_limits(threads):
            skipped = K.bpr_epoch_blocked(
                indptr, indices, row, X, Y, np.float32(0.05), np.float32(0.01), *args
            )
        results.append((skipped, X, Y))
    X_ref, Y_ref = user_item_factors()
    skipped_ref = K.bpr_epoch_blocked_reference(indptr, indices, row, X_ref, Y_ref, 0.05, 0.01, *args)
    (s1, X1, Y1), (s2, X2, Y2) = results
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(Y1, Y2)
    assert s1 == s2 == skipped_ref
    np.testing.assert_allclose(X1, X_ref, atol=1e-5)
    np.testing.assert_allclose(Y1, Y_ref, atol=1e-5)


def test_sample_triples_matches_reference_and_negatives_are_unseen(data):
    indptr, indices, row = data
    got = K.sample_triples(indptr, indices, row, 25, np.uint64(5), 2000)
    want = K.sample_triples_reference(indptr, indices, row, 25, 5, 2000)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    users, positives, negatives = got
    seen = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(40, 25)).toarray() > 0
    assert seen[users, positives].all()
    found = negatives >= 0
    assert not seen[users[found], negatives[found]].any()
    assert (~found == (users == 0)).all()  # only the user with every item goes without
    # uniform over the unseen items: a heavy user's negatives cover all its unseen items evenly
    heavy = np.argmax(np.diff(indptr)[3:]) + 3
    draws = K.sample_triples(indptr, indices, row, 25, np.uint64(9), 200_000)
    neg = draws[2][draws[0] == heavy]
    counts = np.bincount(neg, minlength=25)[~seen[heavy]]
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()


def test_loss_matches_reference(data):
    indptr, indices, row = data
    X, Y = user_item_factors()
    X *= 20  # scores far from 0 in both directions: exercises the overflow-safe branch
    users, positives, negatives = K.sample_triples(indptr, indices, row, 25, np.uint64(1), 500)
    keep = negatives >= 0
    args = (users[keep], positives[keep], negatives[keep])
    assert K.bpr_loss(X, Y, *args) == pytest.approx(K.bpr_loss_reference(X, Y, *args), rel=1e-5)
    assert K.bpr_loss(X, Y, *(a[:0] for a in args)) == 0.0
