"""The top-K kernels against their NumPy reference twins.

Factors are small integers (or, for cosine, vectors whose norms are powers of two), so every
score is exact in float32 whatever the summation order: ties are real ties and the kernels must
match the references id for id.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.kernels.topk import (
    cosine_topk_pairs,
    cosine_topk_pairs_reference,
    pair_rounds,
    topk_dense,
    topk_dense_reference,
    topk_factors,
    topk_factors_reference,
)

NONE = np.zeros(0, dtype=np.int64)


def integer_factors(rng: np.random.Generator, n: int, f: int, high: int = 3) -> np.ndarray:
    """Entries in [-high, high]: few distinct scores, many exact ties."""
    return rng.integers(-high, high + 1, size=(n, f)).astype(np.float32)


def exclusions(rng: np.random.Generator, n_rows: int, n_items: int, density: float) -> sp.csr_matrix:
    m = sp.random(n_rows, n_items, density=density, format="csr", random_state=rng, dtype=np.float32)
    m.sort_indices()
    return m


def run_factors(query, rows, items, cand, normalize, k, banned, excl, row_block, item_block):
    n_rows = len(rows) if len(rows) else len(query)
    ids = np.empty((n_rows, k), dtype=np.int32)
    scores = np.empty((n_rows, k), dtype=np.float32)
    topk_factors(
        query,
        rows,
        items,
        cand,
        normalize,
        banned,
        excl.indptr.astype(np.int64),
        excl.indices,
        row_block,
        item_block,
        ids,
        scores,
    )
    return ids, scores


def check_equal(got, want):
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize(("row_block", "item_block"), [(1, 1), (7, 13), (64, 1000), (1000, 5)])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_factors_match_reference_with_ties_and_exclusions(row_block, item_block, k):
    rng = np.random.default_rng(row_block * 31 + item_block + k)
    query, items = integer_factors(rng, 45, 6), integer_factors(rng, 37, 6)
    excl = exclusions(rng, 45, 37, 0.3)
    banned = np.array([0, 5, 36], dtype=np.int64)
    got = run_factors(query, NONE, items, NONE, False, k, banned, excl, row_block, item_block)
    check_equal(
        got, topk_factors_reference(query, NONE, items, NONE, False, k, banned, excl.indptr, excl.indices)
    )


@pytest.mark.parametrize("item_block", [1, 4, 64])
def test_factors_whitelist_and_row_subset(item_block):
    rng = np.random.default_rng(item_block)
    query, items = integer_factors(rng, 30, 5), integer_factors(rng, 50, 5)
    rows = np.array([29, 0, 3, 3, 17], dtype=np.int64)  # any order, repeats allowed
    cand = np.array([1, 2, 8, 9, 10, 20, 33, 49], dtype=np.int64)
    excl = exclusions(rng, len(rows), 50, 0.4)
    got = run_factors(query, rows, items, cand, False, 6, NONE, excl, 2, item_block)
    want = topk_factors_reference(query, rows, items, cand, False, 6, NONE, excl.indptr, excl.indices)
    check_equal(got, want)
    assert np.isin(got[0][got[0] >= 0], cand).all()


def test_factors_cosine_matches_reference():
    rng = np.random.default_rng(3)
    # norms are 0, 2 or 4: normalised entries are exact binary fractions
    items = np.zeros((40, 16), dtype=np.float32)
    for i in range(1, 40):
        nonzero = rng.choice(16, 4 if i % 2 else 16, replace=False)
        items[i, nonzero] = rng.choice([-1.0, 1.0], len(nonzero))
    rows = np.arange(40, dtype=np.int64)
    itself = sp.csr_matrix((np.ones(40), (rows, rows)), shape=(40, 40))
    got = run_factors(items, rows, items, NONE, True, 7, NONE, itself, 6, 9)
    check_equal(
        got, topk_factors_reference(items, rows, items, NONE, True, 7, NONE, itself.indptr, itself.indices)
    )


def test_factors_padding_when_everything_is_excluded():
    rng = np.random.default_rng(4)
    query, items = integer_factors(rng, 3, 4), integer_factors(rng, 5, 4)
    excl = sp.csr_matrix(np.array([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 0, 1, 0, 1]], dtype=np.float32))
    ids, scores = run_factors(query, NONE, items, NONE, False, 4, np.array([3], np.int64), excl, 2, 2)
    assert (ids[0] == -1).all() and np.isneginf(scores[0]).all()
    assert (ids[1] >= 0).all() and 3 not in ids[1]
    assert ids[2].tolist()[:1] == [1] and (ids[2, 1:] == -1).all()


def test_factors_nan_never_selected_and_threads_do_not_change_results():
    import numba

    rng = np.random.default_rng(5)
    query, items = integer_factors(rng, 200, 4), integer_factors(rng, 300, 4)
    items[7, 0] = np.nan
    excl = exclusions(rng, 200, 300, 0.05)
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            results.append(run_factors(query, NONE, items, NONE, False, 9, NONE, excl, 16, 32))
    finally:
        numba.set_num_threads(previous)
    check_equal(results[0], results[1])
    assert 7 not in results[0][0]
    want = topk_factors_reference(query, NONE, items, NONE, False, 9, NONE, excl.indptr, excl.indices)
    check_equal(results[0], want)


@pytest.mark.parametrize("whitelist", [False, True])
def test_dense_matches_reference(whitelist):
    rng = np.random.default_rng(6)
    scores = rng.integers(0, 4, size=(25, 90)).astype(np.float32)
    scores[2, 5] = np.inf
    scores[3, :] = np.nan
    scores[4, 10:20] = -np.inf
    excl = exclusions(rng, 25, 90, 0.2)
    cand = np.sort(rng.choice(90, 30, replace=False)).astype(np.int64) if whitelist else NONE
    banned = np.array([1, 2, 3], dtype=np.int64)
    ids = np.empty((25, 12), dtype=np.int32)
    top = np.empty((25, 12), dtype=np.float32)
    want = topk_dense_reference(scores, 12, cand, banned, excl.indptr, excl.indices)
    topk_dense(scores.copy(), cand, banned, excl.indptr.astype(np.int64), excl.indices, ids, top)
    check_equal((ids, top), want)
    assert (ids[3] == -1).all()


def test_pair_rounds_cover_every_pair_once():
    for n in range(0, 12):
        seen = []
        for first, second in pair_rounds(n):
            blocks = np.concatenate([first, second[first != second]])
            assert len(set(blocks.tolist())) == len(blocks)  # no block twice in a round
            assert (first <= second).all()
            seen += list(zip(first.tolist(), second.tolist(), strict=True))
        want = [(i, j) for i, j in itertools.combinations_with_replacement(range(n), 2)]
        assert sorted(seen) == want


@pytest.mark.parametrize(("n", "block", "k"), [(1, 4, 3), (23, 4, 5), (40, 7, 3), (40, 64, 50)])
def test_cosine_pairs_match_reference(n, block, k):
    rng = np.random.default_rng(n + block)
    items = np.zeros((n, 8), dtype=np.float32)
    for i in range(n):
        if i % 5 != 4:  # every fifth item is a zero vector
            items[i, rng.choice(8, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    banned = np.array([0], dtype=np.int64) if n > 1 else NONE
    ids = np.full((n, k), -1, dtype=np.int32)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    for first, second in pair_rounds((n + block - 1) // block):
        cosine_topk_pairs(items, block, first, second, banned, ids, scores)
    check_equal((ids, scores), cosine_topk_pairs_reference(items, k, banned))
    assert not (ids == np.arange(n)[:, None]).any()


def test_kernels_run_as_plain_python():
    """NUMBA_DISABLE_JIT=1 turns the kernels into Python (how they are debugged): same answers."""
    code = """
import numpy as np, scipy.sparse as sp
from recforge.kernels.topk import topk_factors, topk_factors_reference
rng = np.random.default_rng(0)
q = rng.integers(-2, 3, (9, 3)).astype(np.float32); v = rng.integers(-2, 3, (11, 3)).astype(np.float32)
x = sp.random(9, 11, density=0.3, format="csr", random_state=1); x.sort_indices()
none = np.zeros(0, np.int64); ids = np.empty((9, 4), np.int32); sc = np.empty((9, 4), np.float32)
topk_factors(q, none, v, none, False, none, x.indptr.astype(np.int64), x.indices, 4, 3, ids, sc)
want = topk_factors_reference(q, none, v, none, False, 4, none, x.indptr, x.indices)
assert (ids == want[0]).all() and (sc == want[1]).all()
"""
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
