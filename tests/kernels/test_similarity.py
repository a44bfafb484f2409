"""The sparse top-N cosine kernel against the dense cosine matrix; the dense item Gram matrix."""

import numpy as np
import pytest
import scipy.sparse as sp

from recforge._numba import thread_limits
from recforge.kernels.similarity import (
    column_dot_topn,
    column_dot_topn_reference,
    column_gram_reference,
    cosine_topn,
    cosine_topn_reference,
    item_gram,
)


def dense_cosine(m):
    """Cosine between the columns of ``m``, written out independently of the package."""
    d = m.toarray().astype(np.float64)
    norms = np.linalg.norm(d, axis=0)
    d = d / np.where(norms > 0, norms, 1.0)
    cos = d.T @ d
    np.fill_diagonal(cos, 0.0)
    return cos


def random_matrix(seed, n_users=60, n_items=30, density=0.15, integer=False):
    m = sp.random(n_users, n_items, density=density, random_state=seed, format="csr", dtype=np.float32)
    if integer:
        m.data = np.ceil(m.data * 3)  # few distinct values: many exactly tied similarities
    m = m.tolil()
    m[5, :] = 0  # an empty user
    m[:, 7] = 0  # an item nobody has
    m = sp.csr_matrix(m)
    m.eliminate_zeros()
    return m


def check_is_top_n(similarity, cos, n):
    """``similarity`` keeps, per row, exactly the top ``n`` positive cosines (any of the tied
    ones at the cut), values equal to the dense cosine, never the item itself."""
    similarity = sp.csr_matrix(similarity)
    for i in range(cos.shape[0]):
        cols = similarity.indices[similarity.indptr[i] : similarity.indptr[i + 1]]
        vals = similarity.data[similarity.indptr[i] : similarity.indptr[i + 1]]
        positive = np.flatnonzero(cos[i] > 1e-12)
        assert i not in cols
        assert len(cols) == min(n, len(positive))
        np.testing.assert_allclose(vals, cos[i, cols], rtol=1e-5)
        if len(cols):
            rest = np.setdiff1d(positive, cols)
            assert len(rest) == 0 or cos[i, rest].max() <= vals.min() + 1e-6


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 3, 10, 29, 50])
def test_cosine_topn_equals_dense_cosine(seed, n):
    m = random_matrix(seed)
    got = cosine_topn(m, n)
    cos = dense_cosine(m)
    check_is_top_n(got, cos, n)
    # continuous random values have no ties: the same neighbours as the dense reference
    want = cosine_topn_reference(m, n)
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.data, want.data, rtol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_ties_and_empty_rows(seed):
    m = random_matrix(seed, integer=True)
    for n in (2, 5):
        got = cosine_topn(m, n)
        check_is_top_n(got, dense_cosine(m), n)
        assert got[7].nnz == 0 and got[:, 7].nnz == 0


def test_exact_ties_go_to_the_lower_index():
    # items 1, 2, 3 have identical columns: their cosines with item 0 are bit-for-bit equal
    d = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]], dtype=np.float32)
    got = cosine_topn(sp.csr_matrix(d), 2)
    assert got[0].indices.tolist() == [1, 2]
    assert got[4].indices.tolist() == [1, 2]


def test_kernel_matches_reference_over_chunks_and_threads():
    m = random_matrix(0, n_users=80, n_items=40)
    t = sp.csr_matrix(m.T)
    args = (m.indptr, m.indices, m.data, t.indptr, t.indices, t.data, np.arange(40), 40, 6)
    want = column_dot_topn_reference(*args, np.array([0, 40]))
    for threads in (1, 2):
        for bounds in ([0, 40], [0, 3, 17, 18, 40]):
            with thread_limits(threads):
                ids, scores = column_dot_topn(*args, np.array(bounds, dtype=np.int64))
            np.testing.assert_array_equal(ids, want[0])
            np.testing.assert_allclose(scores, want[1], rtol=1e-6)


def test_zero_neighbours_and_bad_input():
    m = random_matrix(1)
    assert cosine_topn(m, 0).nnz == 0
    with pytest.raises(ValueError, match="non-negative"):
        cosine_topn(sp.csr_matrix(np.array([[1.0, -1.0]])), 3)


@pytest.mark.parametrize("chunks", [1, 3, 64])
def test_item_gram_equals_the_sparse_product(chunks):
    """The dense Gram matrix EASE inverts (issue 16), against scipy's product in float64."""
    m = sp.random(200, 70, density=0.15, format="csr", random_state=4, dtype=np.float32)
    m.data = (m.data * 5).astype(np.float32)
    got = item_gram(m, chunks=chunks)
    assert got.dtype == np.float32 and got.shape == (70, 70)
    np.testing.assert_allclose(got, column_gram_reference(m), rtol=1e-6)
    np.testing.assert_array_equal(got, item_gram(m, chunks=5))  # the same bits in any chunking


def test_a_block_of_targets_gets_the_bits_of_the_whole():
    """Spark's ItemKNN runs the kernel per block of items on the rows of the users who have them
    (issue 19): every target's list is the same, bit for bit, as in one pass over all items."""
    m = random_matrix(2, n_users=90, n_items=50, integer=True)
    unit = sp.csr_matrix(m, dtype=np.float32)
    t = sp.csr_matrix(unit.T)
    whole = column_dot_topn(
        unit.indptr,
        unit.indices,
        unit.data,
        t.indptr,
        t.indices,
        t.data,
        np.arange(50),
        50,
        5,
        np.array([0, 50]),
    )
    targets = np.array([3, 7, 8, 21, 49])
    users = np.unique(np.concatenate([t.indices[t.indptr[i] : t.indptr[i + 1]] for i in targets]))
    rows = unit[users]  # only the users who have a target, renumbered 0..
    columns = sp.csr_matrix(rows.T)[targets]
    columns.sort_indices()
    part = column_dot_topn(
        rows.indptr,
        rows.indices,
        rows.data,
        columns.indptr,
        columns.indices,
        columns.data,
        targets,
        50,
        5,
        np.array([0, 2, 5]),
    )
    np.testing.assert_array_equal(part[0], whole[0][targets])
    np.testing.assert_array_equal(part[1], whole[1][targets])
    reference = column_dot_topn_reference(
        rows.indptr,
        rows.indices,
        rows.data,
        columns.indptr,
        columns.indices,
        columns.data,
        targets,
        50,
        5,
        np.array([0, 5]),
    )
    np.testing.assert_array_equal(part[0], reference[0])
