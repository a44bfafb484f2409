"""Metrics @K: exact hand-computed cases, properties (hypothesis), and agreement with a plain
Python formula on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.evaluation import (
    METRICS,
    coverage_at_k,
    hit_rate_at_k,
    map_at_k,
    metrics_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

L2, L3, L4, L5 = (1 / math.log2(n) for n in (2, 3, 4, 5))  # discounts of ranks 1..4


# hand-computed ------------------------------------------------------------------------------------
@pytest.fixture
def case():
    """Three users, 10 items, k=5.

    user 0: list [3, 1, 7, 2, 9], relevant {1: 3, 2: 1, 5: 2} (gains): hits at ranks 2 and 4
    user 1: no relevant items (not evaluated)
    user 2: list [5, -1, -1, -1, -1] (padded), relevant {5: 1}: a hit at rank 1
    """
    recommended = np.array([[3, 1, 7, 2, 9], [0, 1, 2, 3, 4], [5, -1, -1, -1, -1]])
    relevant = sp.csr_matrix(
        (np.array([3.0, 1.0, 2.0, 1.0]), (np.array([0, 0, 0, 2]), np.array([1, 2, 5, 5]))), shape=(3, 10)
    )
    return recommended, relevant


def test_precision_by_hand(case):
    rec, rel = case
    per_user = precision_at_k(rec, rel, 5, per_user=True)
    np.testing.assert_allclose(per_user, [2 / 5, np.nan, 1 / 5])
    assert precision_at_k(rec, rel, 5) == pytest.approx((2 / 5 + 1 / 5) / 2)
    assert precision_at_k(rec, rel, 2) == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_recall_by_hand(case):
    rec, rel = case
    np.testing.assert_allclose(recall_at_k(rec, rel, 5, per_user=True), [2 / 3, np.nan, 1.0])
    assert recall_at_k(rec, rel, 1) == pytest.approx((0 + 1) / 2)


def test_ndcg_binary_by_hand(case):
    rec, rel = case
    user0 = (L3 + L5) / (L2 + L3 + L4)  # hits at ranks 2 and 4; ideal: 3 hits on top
    np.testing.assert_allclose(ndcg_at_k(rec, rel, 5, per_user=True), [user0, np.nan, 1.0])
    # k=2: ideal is 2 hits; user 0 has one hit at rank 2
    assert ndcg_at_k(rec, rel, 2) == pytest.approx((L3 / (L2 + L3) + 1.0) / 2)


def test_ndcg_graded_by_hand(case):
    rec, rel = case
    dcg = 3 * L3 + 1 * L5  # item 1 (gain 3) at rank 2, item 2 (gain 1) at rank 4
    idcg = 3 * L2 + 2 * L3 + 1 * L4  # gains 3, 2, 1 in order
    np.testing.assert_allclose(ndcg_at_k(rec, rel, 5, graded=True, per_user=True), [dcg / idcg, np.nan, 1.0])


def test_map_by_hand(case):
    rec, rel = case
    ap0 = (1 / 2 + 2 / 4) / 3  # precision at the hits (ranks 2, 4), over min(3, 5)
    np.testing.assert_allclose(map_at_k(rec, rel, 5, per_user=True), [ap0, np.nan, 1.0])
    # k=2: normalised by min(|R|=3, 2) = 2
    assert map_at_k(rec, rel, 2, per_user=True)[0] == pytest.approx((1 / 2) / 2)


def test_map_normalised_by_k_when_more_relevant_than_k():
    rel = sp.csr_matrix(np.ones((1, 6)))
    assert map_at_k(np.array([[0, 1]]), rel, 2) == pytest.approx(1.0)
    assert map_at_k(np.array([[0, -1]]), rel, 2) == pytest.approx(0.5)


def test_hit_rate_and_mrr_by_hand(case):
    rec, rel = case
    np.testing.assert_allclose(hit_rate_at_k(rec, rel, 5, per_user=True), [1.0, np.nan, 1.0])
    np.testing.assert_allclose(mrr_at_k(rec, rel, 5, per_user=True), [1 / 2, np.nan, 1.0])
    np.testing.assert_allclose(hit_rate_at_k(rec, rel, 1, per_user=True), [0.0, np.nan, 1.0])
    np.testing.assert_allclose(mrr_at_k(rec, rel, 1, per_user=True), [0.0, np.nan, 1.0])


def test_coverage_by_hand(case):
    rec, _ = case
    # first 5 columns: {3,1,7,2,9} | {0,1,2,3,4} | {5} -> {0,1,2,3,4,5,7,9} = 8 of 10
    assert coverage_at_k(rec, 10, 5) == pytest.approx(0.8)
    # first column: {3, 0, 5}
    assert coverage_at_k(rec, 10, 1) == pytest.approx(0.3)
    assert coverage_at_k(rec, 20, 5) == pytest.approx(0.4)


def test_metrics_at_k_matches_the_single_functions(case):
    rec, rel = case
    all_ = metrics_at_k(rec, rel, 5)
    assert list(all_) == list(METRICS)
    assert all_["precision"] == precision_at_k(rec, rel, 5)
    assert all_["recall"] == recall_at_k(rec, rel, 5)
    assert all_["ndcg"] == ndcg_at_k(rec, rel, 5)
    assert all_["ndcg_graded"] == ndcg_at_k(rec, rel, 5, graded=True)
    assert all_["map"] == map_at_k(rec, rel, 5)
    assert all_["hit_rate"] == hit_rate_at_k(rec, rel, 5)
    assert all_["mrr"] == mrr_at_k(rec, rel, 5)
    assert all_["coverage"] == coverage_at_k(rec, 10, 5)
    per_user = metrics_at_k(rec, rel, 5, ["map", "coverage", "ndcg"], per_user=True)
    assert list(per_user) == ["map", "ndcg"]  # coverage is not a per-user metric
    np.testing.assert_array_equal(per_user["map"], map_at_k(rec, rel, 5, per_user=True))


def test_no_user_with_relevant_items_gives_nan_without_warning():
    rel = sp.csr_matrix((2, 4))
    assert math.isnan(precision_at_k(np.array([[0], [1]]), rel, 1))
    assert np.isnan(ndcg_at_k(np.array([[0], [1]]), rel, 1, per_user=True)).all()


def test_zero_and_negative_values_are_not_relevant():
    # item 0 is an explicitly stored zero, item 1 negative: neither is relevant
    rel = sp.csr_matrix((np.array([0.0, -1.0, 2.0]), np.array([0, 1, 2]), np.array([0, 3])), shape=(1, 3))
    assert rel.nnz == 3
    assert precision_at_k(np.array([[0, 1, 2]]), rel, 3) == pytest.approx(1 / 3)
    assert recall_at_k(np.array([[0, 1, 2]]), rel, 3) == pytest.approx(1.0)


def test_extra_columns_beyond_k_are_ignored(case):
    rec, rel = case
    assert precision_at_k(rec, rel, 3) == precision_at_k(rec[:, :3], rel, 3)


@pytest.mark.parametrize(
    ("recommended", "k", "message"),
    [
        (np.array([0, 1]), 1, "2-D"),
        (np.array([[0.0, 1.0]]), 1, "integer"),
        (np.array([[0, 1]]), 3, "fewer than k"),
        (np.array([[0, 1]]), 0, "positive integer"),
        (np.array([[0, -2]]), 2, "-1 for padding"),
        (np.array([[0, 5]]), 2, "outside the 4 items"),
        (np.array([[1, 1]]), 2, "more than once"),
        (np.array([[0, 1], [1, 2]]), 2, "rows"),
    ],
)
def test_bad_input_is_a_clear_error(recommended, k, message):
    with pytest.raises(ValueError, match=message):
        precision_at_k(recommended, sp.csr_matrix((1, 4)), k)


def test_bad_relevant_and_names():
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(np.array([[0]]), sp.csr_matrix(np.array([[np.nan, 1.0]])), 1)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics_at_k(np.array([[0]]), sp.csr_matrix((1, 2)), 1, ["precision", "auc"])
    with pytest.raises(ValueError, match="n_items"):
        coverage_at_k(np.array([[0]]), 0, 1)


# a plain Python reference -------------------------------------------------------------------------
def reference(recommended, relevant, k):
    """Straightforward per-user loops: the definitions, written the obvious way."""
    rel = sp.csr_matrix(relevant)
    out = {name: [] for name in ("precision", "recall", "ndcg", "ndcg_graded", "map", "hit_rate", "mrr")}
    for u in range(rel.shape[0]):
        row = rel.getrow(u)
        gains = {int(i): float(g) for i, g in zip(row.indices, row.data, strict=True) if g > 0}
        if not gains:
            continue
        lst = [int(i) for i in recommended[u][:k]]
        hits = [1 if i in gains else 0 for i in lst]
        out["precision"].append(sum(hits) / k)
        out["recall"].append(sum(hits) / len(gains))
        out["hit_rate"].append(1.0 if any(hits) else 0.0)
        out["mrr"].append(next((1 / (j + 1) for j, h in enumerate(hits) if h), 0.0))
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(gains), k)))
        out["ndcg"].append(dcg / idcg)
        gdcg = sum(gains.get(i, 0.0) / math.log2(j + 2) for j, i in enumerate(lst))
        best = sorted(gains.values(), reverse=True)[:k]
        out["ndcg_graded"].append(gdcg / sum(g / math.log2(j + 2) for j, g in enumerate(best)))
        found, ap = 0, 0.0
        for j, h in enumerate(hits):
            if h:
                found += 1
                ap += found / (j + 1)
        out["map"].append(ap / min(len(gains), k))
    return {name: (sum(v) / len(v) if v else float("nan")) for name, v in out.items()}


def random_case(seed, n_users, n_items, k, density=0.3, pad=0.2):
    """Random lists (distinct ids, some rows padded at the end) and random graded relevance."""
    rng = np.random.default_rng(seed)
    width = min(k, n_items)
    rec = np.full((n_users, k), -1, dtype=np.int64)
    for u in range(n_users):
        length = width if rng.random() > pad else int(rng.integers(0, width + 1))
        rec[u, :length] = rng.permutation(n_items)[:length]
    mask = rng.random((n_users, n_items)) < density
    gains = rng.integers(1, 6, size=(n_users, n_items)).astype(float)
    return rec, sp.csr_matrix(np.where(mask, gains, 0.0))


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_plain_python_on_random_data(seed):
    rec, rel = random_case(seed, n_users=60, n_items=25, k=8)
    expected = reference(rec, rel, 8)
    got = metrics_at_k(rec, rel, 8)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


# properties ---------------------------------------------------------------------------------------
@st.composite
def cases(draw):
    n_users = draw(st.integers(1, 12))
    n_items = draw(st.integers(1, 15))
    k = draw(st.integers(1, 8))
    density = draw(st.floats(0.0, 1.0))
    seed = draw(st.integers(0, 2**32 - 1))
    rec, rel = random_case(seed, n_users, n_items, k, density=density)
    return rec, rel, k


PER_USER = ("precision", "recall", "ndcg", "ndcg_graded", "map", "hit_rate", "mrr")


@settings(max_examples=150, deadline=None)
@given(cases())
def test_per_user_values_lie_in_unit_interval_and_nan_exactly_without_relevant(c):
    rec, rel, k = c
    has_relevant = np.diff(rel.indptr) > 0
    for name, values in metrics_at_k(rec, rel, k, PER_USER, per_user=True).items():
        assert np.array_equal(np.isnan(values), ~has_relevant), name
        v = values[has_relevant]
        assert ((v >= 0) & (v <= 1 + 1e-12)).all(), name
    assert 0 <= coverage_at_k(rec, rel.shape[1], k) <= 1


@settings(max_examples=150, deadline=None)
@given(cases())
def test_a_perfect_list_scores_one(c):
    rec, rel, k = c
    # each user's relevant items by gain (descending), padded: the best list there is
    perfect = np.full_like(rec, -1)
    for u in range(rel.shape[0]):
        row = rel.getrow(u)
        best = row.indices[np.argsort(-row.data, kind="stable")][:k]
        perfect[u, : len(best)] = best
    n_rel = np.diff(rel.indptr)
    got = metrics_at_k(perfect, rel, k, PER_USER, per_user=True)
    ev = n_rel > 0
    for name in ("ndcg", "ndcg_graded", "map", "hit_rate", "mrr"):
        np.testing.assert_allclose(got[name][ev], 1.0, err_msg=name)
    np.testing.assert_allclose(got["precision"][ev], np.minimum(n_rel[ev], k) / k)
    np.testing.assert_allclose(got["recall"][ev], np.minimum(n_rel[ev], k) / n_rel[ev])


@settings(max_examples=150, deadline=None)
@given(cases())
def test_no_hit_scores_zero(c):
    rec, rel, k = c
    dense = rel.toarray() > 0
    misses = np.full_like(rec, -1)
    for u in range(rel.shape[0]):
        others = np.flatnonzero(~dense[u])[:k]
        misses[u, : len(others)] = others
    got = metrics_at_k(misses, rel, k, PER_USER, per_user=True)
    ev = np.diff(rel.indptr) > 0
    for name, values in got.items():
        assert (values[ev] == 0).all(), name


@settings(max_examples=150, deadline=None)
@given(cases(), st.integers(0, 2**32 - 1))
def test_order_of_the_non_relevant_entries_does_not_matter(c, seed):
    rec, rel, k = c
    rng = np.random.default_rng(seed)
    dense = rel.toarray() > 0
    shuffled = rec.copy()
    for u in range(rec.shape[0]):
        miss = np.flatnonzero((rec[u] < 0) | ~dense[u][np.maximum(rec[u], 0)])
        shuffled[u, miss] = rec[u, rng.permutation(miss)]  # relevant entries keep their ranks
    a = metrics_at_k(rec, rel, k)
    b = metrics_at_k(shuffled, rel, k)
    for name in METRICS:
        assert a[name] == pytest.approx(b[name], nan_ok=True), name


@settings(max_examples=150, deadline=None)
@given(cases(), st.integers(0, 2**32 - 1))
def test_permuting_users_does_not_change_the_means(c, seed):
    rec, rel, k = c
    perm = np.random.default_rng(seed).permutation(rec.shape[0])
    a = metrics_at_k(rec, rel, k)
    b = metrics_at_k(rec[perm], rel[perm], k)
    for name in METRICS:
        assert a[name] == pytest.approx(b[name], rel=1e-9, abs=1e-12, nan_ok=True), name
    pa_ = metrics_at_k(rec, rel, k, PER_USER, per_user=True)
    pb = metrics_at_k(rec[perm], rel[perm], k, PER_USER, per_user=True)
    for name in PER_USER:
        np.testing.assert_allclose(pa_[name][perm], pb[name], rtol=1e-6, atol=1e-7)


@settings(max_examples=100, deadline=None)
@given(cases())
def test_binary_and_graded_ndcg_agree_on_binary_relevance(c):
    rec, rel, k = c
    binary = rel.copy()
    binary.data[:] = 1.0
    a = ndcg_at_k(rec, binary, k, per_user=True)
    b = ndcg_at_k(rec, binary, k, graded=True, per_user=True)
    np.testing.assert_allclose(a, b)
