"""recommend_all, similar_items_all and select_topk against a brute force written from the
contract: every score, Python's sort on (-score, id), the first k, padding -1 / -inf."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recforge import recommend_all, similar_items_all
from recforge.topk import (
    recommend_all_to_files,
    select_topk,
    similar_items_all_to_files,
)


def brute_force(scores, k, excluded=None, allowed=None):
    """Top-k of each row of a dense matrix; ``excluded`` a dense bool mask, ``allowed`` a bool
    vector over items."""
    n_rows, n_items = scores.shape
    ids = np.full((n_rows, k), -1, dtype=np.int32)
    top = np.full((n_rows, k), -np.inf, dtype=np.float32)
    for r in range(n_rows):
        candidates = [
            (-float(scores[r, i]), i)
            for i in range(n_items)
            if (allowed is None or allowed[i])
            and (excluded is None or not excluded[r, i])
            and not math.isnan(scores[r, i])
            and scores[r, i] > -np.inf
        ]
        best = sorted(candidates)[:k]
        ids[r, : len(best)] = [i for _, i in best]
        top[r, : len(best)] = [-s for s, _ in best]
    return ids, top


def integer_factors(rng, n, f, high=2):
    return rng.integers(-high, high + 1, size=(n, f)).astype(np.float32)


def allowed_mask(n_items, include=None, exclude=None):
    mask = np.zeros(n_items, dtype=bool) if include is not None else np.ones(n_items, dtype=bool)
    if include is not None:
        mask[include] = True
    if exclude is not None:
        mask[exclude] = False
    return mask


def unsorted_csr(dense: np.ndarray) -> sp.csr_matrix:
    """A CSR matrix with the indices of each row stored in reverse order."""
    rows, cols = np.nonzero(dense)
    order = np.lexsort((-cols, rows))
    m = sp.csr_matrix(
        (np.ones(len(order), np.float32), cols[order], np.r_[0, np.cumsum(dense.astype(bool).sum(1))]),
        shape=dense.shape,
    )
    m.has_sorted_indices = False
    return m


def assert_same(got, want):
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


# ----------------------------------------------------------------------------- recommend_all
@pytest.mark.parametrize(("block_size", "item_block_size"), [(None, None), (1, 1), (5, 7), (8, 100)])
@pytest.mark.parametrize("whitelist", [False, True])
def test_recommend_all_matches_brute_force(block_size, item_block_size, whitelist):
    rng = np.random.default_rng(0)
    users, items = integer_factors(rng, 33, 5), integer_factors(rng, 41, 5)
    seen = rng.random((33, 41)) < 0.25
    exclude_items = np.array([40, 3, 3, 17])
    include_items = rng.choice(41, 20, replace=False) if whitelist else None
    got = recommend_all(
        users,
        items,
        6,
        unsorted_csr(seen),
        block_size=block_size,
        item_block_size=item_block_size,
        exclude_items=exclude_items,
        include_items=include_items,
    )
    want = brute_force(users @ items.T, 6, seen, allowed_mask(41, include_items, exclude_items))
    assert_same(got, want)
    assert got[0].dtype == np.int32 and got[1].dtype == np.float32


def test_recommend_all_ties_go_to_the_lower_index():
    users = np.ones((2, 3), dtype=np.float32)
    items = np.ones((10, 3), dtype=np.float32)  # every score is 3
    ids, scores = recommend_all(users, items, 4, sp.csr_matrix(np.eye(2, 10)), item_block_size=3)
    assert ids.tolist() == [[1, 2, 3, 4], [0, 2, 3, 4]]
    assert (scores == 3).all()


def test_recommend_all_pads_when_k_exceeds_the_candidates():
    rng = np.random.default_rng(1)
    users, items = integer_factors(rng, 4, 3), integer_factors(rng, 6, 3)
    seen = np.zeros((4, 6), dtype=bool)
    seen[0] = True  # a user who has seen everything
    seen[1, :4] = True
    ids, scores = recommend_all(users, items, 9, sp.csr_matrix(seen))
    assert (ids[0] == -1).all() and np.isneginf(scores[0]).all()
    assert set(ids[1, :2].tolist()) == {4, 5} and (ids[1, 2:] == -1).all()
    assert (np.sort(ids[2, :6]) == np.arange(6)).all() and (ids[2, 6:] == -1).all()
    assert np.isneginf(scores[2, 6:]).all() and np.isfinite(scores[2, :6]).all()


def test_recommend_all_empty_users_and_catalogues():
    items = np.arange(12, dtype=np.float32).reshape(4, 3)
    zero_users = np.zeros((2, 3), dtype=np.float32)  # every score 0: the lowest ids win
    ids, scores = recommend_all(zero_users, items, 3)
    assert ids.tolist() == [[0, 1, 2], [0, 1, 2]] and (scores == 0).all()
    ids, scores = recommend_all(np.zeros((0, 3), np.float32), items, 3)
    assert ids.shape == (0, 3) and scores.shape == (0, 3)
    ids, scores = recommend_all(zero_users, np.zeros((0, 3), np.float32), 3)
    assert (ids == -1).all() and np.isneginf(scores).all()


def test_recommend_all_everything_excluded():
    rng = np.random.default_rng(2)
    users, items = integer_factors(rng, 5, 3), integer_factors(rng, 7, 3)
    for options in (
        {"exclude_items": np.arange(7)},
        {"include_items": [1, 2], "exclude_items": [1, 2]},
    ):
        ids, scores = recommend_all(users, items, 3, **options)
        assert (ids == -1).all() and np.isneginf(scores).all()


def test_recommend_all_same_result_on_one_and_two_threads():
    rng = np.random.default_rng(3)
    users = rng.standard_normal((300, 16), dtype=np.float32)
    items = rng.standard_normal((1100, 16), dtype=np.float32)
    seen = sp.random(300, 1100, density=0.02, format="csr", random_state=4)
    one = recommend_all(users, items, 10, seen, num_threads=1, block_size=32, item_block_size=100)
    two = recommend_all(users, items, 10, seen, num_threads=2, block_size=32, item_block_size=100)
    assert_same(one, two)
    # and against the whole product: scores to float rounding, ids where scores differ clearly
    want_ids, want_scores = brute_force(users @ items.T, 10, seen.toarray() != 0)
    np.testing.assert_allclose(one[1], want_scores, rtol=1e-5, atol=1e-5)
    assert (one[0] == want_ids).mean() > 0.999


def test_recommend_all_writes_into_memmaps(tmp_path: Path):
    rng = np.random.default_rng(5)
    users, items = integer_factors(rng, 50, 4), integer_factors(rng, 30, 4)
    seen = sp.random(50, 30, density=0.2, format="csr", random_state=6)
    want = recommend_all(users, items, 5, seen)
    ids = np.lib.format.open_memmap(tmp_path / "ids.npy", mode="w+", dtype=np.int32, shape=(50, 5))
    scores = np.lib.format.open_memmap(tmp_path / "scores.npy", mode="w+", dtype=np.float32, shape=(50, 5))
    got = recommend_all(users, items, 5, seen, out=(ids, scores), block_size=4)
    assert got[0] is ids and got[1] is scores
    ids.flush()
    scores.flush()
    assert_same((np.load(tmp_path / "ids.npy"), np.load(tmp_path / "scores.npy")), want)

    files = recommend_all_to_files(tmp_path / "artifact", users, items, 5, seen, name="users", block_size=8)
    assert_same(files, want)
    assert isinstance(files[0], np.memmap) and not files[0].flags.writeable
    assert sorted(p.name for p in (tmp_path / "artifact").iterdir()) == ["users_ids.npy", "users_scores.npy"]


def test_to_files_leaves_nothing_half_written(tmp_path: Path):
    items = np.ones((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="factors"):
        recommend_all_to_files(tmp_path, np.ones((3, 5), np.float32), items, 2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"k": 0}, "k must be"),
        ({"k": True}, "k must be"),
        ({"item_factors": np.ones((4, 5), np.float32)}, "factors"),
        ({"user_factors": np.ones(3, np.float32)}, "2-d"),
        ({"exclude": sp.csr_matrix((3, 5))}, "exclude has shape"),
        ({"include_items": [0, 4]}, "include_items"),
        ({"exclude_items": [-1]}, "exclude_items"),
        ({"include_items": [0.5]}, "integer"),
        ({"block_size": 0}, "block_size"),
        ({"out": (np.zeros((3, 2), np.int64), np.zeros((3, 2), np.float32))}, "out ids"),
        ({"out": (np.zeros((3, 2), np.int32), np.zeros((2, 3), np.float32).T)}, "out scores"),
    ],
)
def test_recommend_all_rejects_bad_input(kwargs, error):
    arguments = {
        "user_factors": np.ones((3, 2), np.float32),
        "item_factors": np.ones((4, 2), np.float32),
        "k": 2,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=error):
        recommend_all(**arguments)


def test_recommend_all_wants_a_sparse_exclude():
    with pytest.raises(TypeError, match="sparse"):
        recommend_all(np.ones((3, 2)), np.ones((4, 2)), 2, np.zeros((3, 4)))


def test_recommend_all_with_a_progress_bar(capsys):
    rng = np.random.default_rng(7)
    users, items = integer_factors(rng, 20, 3), integer_factors(rng, 9, 3)
    assert_same(recommend_all(users, items, 3, progress=True), recommend_all(users, items, 3))


# ----------------------------------------------------------------------------- similar items
def exact_unit_vectors(rng, n, f=8):
    """Vectors of four +-1 entries (norm 2) and a few zero vectors: exact cosines."""
    v = np.zeros((n, f), dtype=np.float32)
    for i in range(n):
        if i % 7 != 6:
            v[i, rng.choice(f, 4, replace=False)] = rng.choice([-2.0, 2.0], 4)
    return v


def cosine_brute_force(v, k, rows=None, allowed=None):
    norms = np.linalg.norm(v, axis=1)
    normed = v / np.where(norms > 0, norms, 1)[:, None]
    rows = np.arange(len(v)) if rows is None else np.asarray(rows)
    scores = normed[rows] @ normed.T
    itself = np.zeros_like(scores, dtype=bool)
    itself[np.arange(len(rows)), rows] = True
    return brute_force(scores, k, itself, allowed)


@pytest.mark.parametrize("block_size", [None, 1, 4, 9, 64])
def test_similar_items_all_matches_brute_force(block_size):
    rng = np.random.default_rng(8)
    v = exact_unit_vectors(rng, 45)
    want = cosine_brute_force(v, 6)
    assert_same(similar_items_all(v, 6, block_size=block_size), want)
    assert_same(similar_items_all(v, 6, block_size=block_size, symmetric=False, item_block_size=5), want)
    banned = np.array([0, 13])
    want = cosine_brute_force(v, 6, allowed=allowed_mask(45, exclude=banned))
    assert_same(similar_items_all(v, 6, block_size=block_size, exclude_items=banned), want)


def test_similar_items_subset_whitelist_and_threads():
    rng = np.random.default_rng(9)
    v = exact_unit_vectors(rng, 60)
    rows = np.array([59, 0, 7, 7, 30])
    include = rng.choice(60, 25, replace=False)
    want = cosine_brute_force(v, 8, rows, allowed_mask(60, include, [include[0]]))
    for threads in (1, 2):
        got = similar_items_all(
            v, 8, items=rows, include_items=include, exclude_items=[include[0]], num_threads=threads
        )
        assert_same(got, want)
    assert not (got[0] == rows[:, None]).any()


def test_similar_items_random_factors_one_and_two_threads():
    rng = np.random.default_rng(10)
    v = rng.standard_normal((700, 12), dtype=np.float32)
    one = similar_items_all(v, 10, num_threads=1, block_size=64)
    two = similar_items_all(v, 10, num_threads=2, block_size=64)
    assert_same(one, two)
    want_ids, want_scores = cosine_brute_force(v.astype(np.float64), 10)
    np.testing.assert_allclose(one[1], want_scores, rtol=1e-5, atol=1e-5)
    assert (one[0] == want_ids).mean() > 0.999
    assert not (one[0] == np.arange(700)[:, None]).any()


def test_similar_items_edge_cases(tmp_path: Path):
    v = np.eye(3, dtype=np.float32)
    ids, scores = similar_items_all(v, 5)  # k beyond the n - 1 other items
    assert ids.tolist() == [[1, 2, -1, -1, -1], [0, 2, -1, -1, -1], [0, 1, -1, -1, -1]]
    assert (scores[:, :2] == 0).all() and np.isneginf(scores[:, 2:]).all()
    one = similar_items_all(np.ones((1, 4), np.float32), 2)
    assert (one[0] == -1).all()
    with pytest.raises(ValueError, match="symmetric"):
        similar_items_all(v, 2, items=[0], symmetric=True)
    with pytest.raises(ValueError, match="items"):
        similar_items_all(v, 2, items=[3])
    files = similar_items_all_to_files(tmp_path, v, 2, items=[2, 0])
    assert files[0].tolist() == [[0, 1], [1, 2]]
    assert (tmp_path / "similar_ids.npy").exists()


# ----------------------------------------------------------------------------- select_topk
def test_select_topk_matches_brute_force():
    rng = np.random.default_rng(11)
    scores = rng.integers(0, 5, size=(12, 30)).astype(np.float32)
    scores[0, 3] = np.nan
    scores[1] = -np.inf
    seen = rng.random((12, 30)) < 0.3
    include, exclude = rng.choice(30, 18, replace=False), [2, 4]
    got = select_topk(scores.copy(), 7, sp.csr_matrix(seen), exclude_items=exclude, include_items=include)
    assert_same(got, brute_force(scores, 7, seen, allowed_mask(30, include, exclude)))
    assert_same(select_topk(scores.copy(), 40), brute_force(scores, 40))
    read_only = scores.copy()
    read_only.flags.writeable = False
    assert_same(select_topk(read_only, 3), brute_force(scores, 3))


# ----------------------------------------------------------------------------- memory
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _peak_extra_mb(call) -> float:
    """Peak resident memory added while ``call`` runs (Linux: VmHWM after resetting it)."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    call()
    return (_status_kb("VmHWM") - before) / 1024


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_memory_stays_bounded_on_a_large_catalogue():
    """2,000 users x 200,000 items: the score matrix would be 1.5 GB; the blocked top-K adds a
    few tiles' worth, whatever the catalogue."""
    rng = np.random.default_rng(12)
    users = rng.standard_normal((2000, 8), dtype=np.float32)
    items = rng.standard_normal((200_000, 8), dtype=np.float32)
    pairs = (rng.integers(0, 2000, 40_000), rng.integers(0, 200_000, 40_000))
    seen = sp.csr_matrix((np.ones(40_000, np.float32), pairs), shape=(2000, 200_000))
    ids = np.zeros((2000, 10), np.int32)
    scores = np.zeros((2000, 10), np.float32)
    recommend_all(users[:10], items[:100], 10)  # compiled or loaded before measuring
    similar_items_all(items[:100], 10, items=np.arange(5))
    similar_items_all(items[:100], 10)
    assert _peak_extra_mb(lambda: recommend_all(users, items, 10, seen, out=(ids, scores))) < 48
    assert _peak_extra_mb(lambda: similar_items_all(items, 10, items=np.arange(2000), out=(ids, scores))) < 48
    small = items[:20_000]  # symmetric: 20,000 x 20,000 would be 1.5 GB too
    out = (np.zeros((20_000, 10), np.int32), np.zeros((20_000, 10), np.float32))
    assert _peak_extra_mb(lambda: similar_items_all(small, 10, out=out)) < 48
