"""The ranking kernels against their NumPy reference twins, on one thread and in parallel."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.kernels import ranking


def random_case(seed, n_rows=300, n_items=50, k=7):
    rng = np.random.default_rng(seed)
    rel = sp.random(n_rows, n_items, density=rng.uniform(0.0, 0.5), random_state=seed, format="csr")
    rel.data = rng.integers(1, 6, size=rel.nnz).astype(np.float64)  # graded, with ties
    rel.sort_indices()
    rec = np.argsort(rng.random((n_rows, n_items)), axis=1)[:, :k]
    rec[rng.random((n_rows, k)) < 0.1] = -1
    return rel, rec


@pytest.fixture(params=["serial", "parallel"])
def path(request, monkeypatch):
    monkeypatch.setattr(ranking, "PARALLEL_ROWS", 1 if request.param == "parallel" else 10**9)
    return request.param


@pytest.mark.parametrize("seed", range(4))
def test_match_topk_equals_its_reference(seed, path):
    rel, rec = random_case(seed)
    hit, gain = ranking.match_topk(rel.indptr, rel.indices, rel.data, rec)
    ref_hit, ref_gain = ranking.match_topk_reference(rel.indptr, rel.indices, rel.data, rec)
    np.testing.assert_array_equal(hit, ref_hit)
    np.testing.assert_array_equal(gain, ref_gain)
    dense = rel.toarray()
    for u in (0, 17, 299):
        for j, item in enumerate(rec[u]):
            assert hit[u, j] == (item >= 0 and dense[u, item] > 0)


@pytest.mark.parametrize(("seed", "k"), [(0, 1), (1, 3), (2, 10), (3, 60)])
def test_ideal_dcg_equals_its_reference(seed, k, path):
    rel, _ = random_case(seed)
    got = ranking.ideal_dcg(rel.indptr, rel.data, k)
    np.testing.assert_allclose(got, ranking.ideal_dcg_reference(rel.indptr, rel.data, k), rtol=1e-12)
    row = np.sort(rel.getrow(5).data)[::-1][:k]
    assert got[5] == pytest.approx(sum(g / np.log2(r + 2) for r, g in enumerate(row)))


def test_empty_inputs(path):
    indptr = np.zeros(4, dtype=np.int32)
    empty = np.zeros(0)
    hit, gain = ranking.match_topk(indptr, empty.astype(np.int32), empty, np.full((3, 2), -1))
    assert not hit.any() and not gain.any()
    np.testing.assert_array_equal(ranking.ideal_dcg(indptr, empty, 5), np.zeros(3))
    ref_hit, _ = ranking.match_topk_reference(indptr, empty.astype(np.int32), empty, np.full((3, 2), -1))
    assert ref_hit.shape == (3, 2) and not ref_hit.any()
