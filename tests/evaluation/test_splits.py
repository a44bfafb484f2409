"""Splits: reproducible by seed, disjoint, union equals the input, time respected, and what
cannot be kept (test-only users and items, users with too few rows) reported."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from recforge.data import Interactions
from recforge.evaluation import Split, leave_last_n_split, random_split, temporal_split
from recforge.weighting import Weighting

T0 = 1_600_000_000  # seconds
NO_DECAY = Weighting(half_life_days=None)


def make_events(n_users=30, seed=0, n_items=40):
    """Users with 1..25 events on random items (repeats of a pair allowed), random times."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 26, size=n_users)
    users = np.repeat(np.arange(n_users), counts)
    n = len(users)
    order = rng.permutation(n)  # rows not grouped by user
    users = users[order]
    items = rng.integers(0, n_items, size=n)
    times = T0 + rng.integers(0, 1_000_000, size=n)
    return table(users, items, times, rng.integers(1, 6, size=n).astype(float))


def table(users, items, times, values=None, event_type="rating"):
    n = len(users)
    return pa.table(
        {
            "user_id": pa.array([f"u{u}" for u in users], pa.large_string()),
            "item_id": pa.array([f"i{i}" for i in items], pa.large_string()),
            "event_type": pa.array([event_type] * n, pa.large_string()),
            "value": pa.array(np.ones(n) if values is None else values, pa.float64()),
            "timestamp": pa.array(
                np.asarray(times, dtype=np.int64) * 1_000_000, pa.timestamp("us", tz="UTC")
            ),
        }
    )


def pair_sums(events: pa.Table) -> Counter:
    """(user, item) -> summed value (no decay, rating weight 1): what Interactions holds."""
    out: Counter = Counter()
    for u, i, v in zip(*(events.column(c).to_pylist() for c in ("user_id", "item_id", "value")), strict=True):
        out[u, i] += v
    return out


def interactions_pairs(x: Interactions) -> Counter:
    m = x.matrix.tocoo()
    users, items = x.users.ids(m.row), x.items.ids(m.col)
    return Counter({(u, i): float(v) for u, i, v in zip(users, items, m.data, strict=True)})


def check_partition(events: pa.Table, split: Split) -> None:
    """Train + test + what was reported as dropped is exactly the input, pair by pair."""
    mask = split.test_mask
    assert mask.dtype == bool and len(mask) == events.num_rows
    train_events = events.filter(pa.array(~mask))
    test_events = events.filter(pa.array(mask))
    assert interactions_pairs(split.train) == pytest.approx(pair_sums(train_events))
    expected_test = pair_sums(test_events)
    kept = {p: v for p, v in expected_test.items() if p[0] in split.train.users and p[1] in split.train.items}
    assert interactions_pairs(split.test) == pytest.approx(kept)
    dropped_rows = sum(
        1
        for u, i in zip(
            test_events.column("user_id").to_pylist(), test_events.column("item_id").to_pylist(), strict=True
        )
        if u not in split.train.users or i not in split.train.items
    )
    assert split.dropped_test == dropped_rows
    assert split.train.users is split.test.users and split.train.items is split.test.items


# per-user random holdout --------------------------------------------------------------------------
def test_random_split_is_reproducible_by_seed():
    events = make_events()
    a = random_split(events, 0.2, random_state=7, weighting=NO_DECAY)
    b = random_split(events, 0.2, random_state=np.random.default_rng(7), weighting=NO_DECAY)
    c = random_split(events, 0.2, random_state=8, weighting=NO_DECAY)
    np.testing.assert_array_equal(a.test_mask, b.test_mask)
    assert not np.array_equal(a.test_mask, c.test_mask)
    assert a.params["random_state"] == 7 and b.params["random_state"] is None


def test_random_split_partitions_the_input():
    events = make_events()
    split = random_split(events, 0.3, random_state=1, weighting=NO_DECAY)
    check_partition(events, split)


def test_random_split_holds_out_the_rounded_fraction_per_user():
    events = make_events(n_users=60)
    split = random_split(events, 0.2, random_state=0, weighting=NO_DECAY)
    users = np.asarray(events.column("user_id").to_pylist())
    n_without = 0
    for u in np.unique(users):
        rows = users == u
        n = int(rows.sum())
        expected = min(int(np.floor(0.2 * n + 0.5)), n - 1)
        assert int(split.test_mask[rows].sum()) == expected, (u, n)
        n_without += expected == 0
    assert n_without > 0  # users with 1 or 2 events keep everything in train
    assert split.users_without_test == n_without


def test_random_split_min_train_zero_can_hold_out_a_whole_user():
    events = table([0, 0, 1, 1, 1, 1], [0, 1, 0, 1, 2, 3], [1, 2, 3, 4, 5, 6])
    split = random_split(events, 0.99, random_state=0, min_train=0, weighting=NO_DECAY)
    assert split.test_mask.all()
    assert sorted(split.test_only_users) == ["u0", "u1"]
    assert split.dropped_test == 6 and split.test.nnz == 0


def test_random_split_reports_test_only_items():
    # 200 items over ~500 events: some items occur only in rows the split sends to test
    events = make_events(n_users=40, n_items=200, seed=3)
    split = random_split(events, 0.3, random_state=0, weighting=NO_DECAY)
    test_events = events.filter(pa.array(split.test_mask))
    train_items = set(events.filter(pa.array(~split.test_mask)).column("item_id").to_pylist())
    expected = sorted(set(test_events.column("item_id").to_pylist()) - train_items)
    assert len(expected) > 0
    assert list(split.test_only_items) == expected
    assert len(split.test_only_users) == 0
    summary = split.summary()
    assert summary["test_only_items"] == len(expected)
    assert summary["dropped_test"] == split.dropped_test > 0
    assert summary["train_rows"] + summary["test_rows"] == events.num_rows


def test_random_split_of_interactions_splits_pairs_and_ratings_together():
    rng = np.random.default_rng(0)
    dense = (rng.random((25, 30)) < 0.4) * rng.integers(1, 6, size=(25, 30))
    ratings = sp.csr_matrix(dense.astype(np.float32))
    data = Interactions.from_csr(ratings * 2.0, ratings=ratings)
    a = random_split(data, 0.25, random_state=3)
    b = random_split(data, 0.25, random_state=3)
    np.testing.assert_array_equal(a.test_mask, b.test_mask)
    assert len(a.test_mask) == data.nnz
    train, test = a.train, a.test
    assert train.users is data.users and test.items is data.items
    # disjoint, and (nothing dropped here or accounted for) the union is the input
    assert train.matrix.multiply(test.matrix).nnz == 0
    assert a.dropped_test == data.nnz - train.nnz - test.nnz
    if a.dropped_test == 0:
        assert (train.matrix + test.matrix != data.matrix).nnz == 0
    # ratings follow their pairs
    assert (train.ratings.astype(bool) != train.matrix.astype(bool)).nnz == 0
    np.testing.assert_allclose(test.ratings.toarray() * 2, test.matrix.toarray())
    # per-user counts
    n = np.diff(data.matrix.indptr)
    rows = np.repeat(np.arange(25), n)
    held = np.bincount(rows[a.test_mask], minlength=25)
    np.testing.assert_array_equal(held, np.minimum(np.floor(0.25 * n + 0.5), n - 1).clip(0))


def test_random_split_rejects_bad_input():
    events = make_events()
    with pytest.raises(ValueError, match="test_fraction"):
        random_split(events, 1.5)
    with pytest.raises(ValueError, match="test_fraction"):
        random_split(events, 0.0)
    with pytest.raises(ValueError, match="random_state"):
        random_split(events, 0.2, random_state="zero")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lacks column"):
        random_split(events.drop_columns(["timestamp"]), 0.2)
    with pytest.raises(TypeError, match="event table"):
        leave_last_n_split({"user_id": []}, 1)  # type: ignore[arg-type]


# leave-last-n -------------------------------------------------------------------------------------
def test_leave_last_n_holds_out_each_users_newest_events():
    events = make_events(n_users=40, seed=5)
    split = leave_last_n_split(events, 2, weighting=NO_DECAY)
    check_partition(events, split)
    users = np.asarray(events.column("user_id").to_pylist())
    times = events.column("timestamp").cast(pa.int64()).to_numpy()
    n_without = 0
    for u in np.unique(users):
        rows = np.flatnonzero(users == u)
        n = len(rows)
        held = rows[split.test_mask[rows]]
        assert len(held) == min(2, n - 1)
        n_without += n == 1
        if len(held):
            kept = rows[~split.test_mask[rows]]
            assert times[held].min() >= times[kept].max()
    assert split.users_without_test == n_without
    assert split.params == {"method": "leave_last_n", "n": 2, "min_train": 1, **_build()}


def _build():
    return {
        "weights": {"view": 1.0, "like": 4.0, "cart": 8.0, "purchase": 16.0, "rating": 1.0},
        "half_life_days": None,
    }


def test_leave_last_n_breaks_time_ties_by_row_order():
    events = table([0, 0, 0], [0, 1, 2], [5, 5, 5])
    split = leave_last_n_split(events, 1)
    assert split.test_mask.tolist() == [False, False, True]


# global temporal cut ------------------------------------------------------------------------------
def test_temporal_split_at_a_time():
    events = make_events(seed=2)
    at = datetime.fromtimestamp(T0 + 700_000, tz=UTC)
    split = temporal_split(events, at=at, weighting=NO_DECAY)
    check_partition(events, split)
    times = events.column("timestamp").cast(pa.int64()).to_numpy() // 1_000_000
    np.testing.assert_array_equal(split.test_mask, times >= T0 + 700_000)
    assert split.params["cut"] == at.isoformat().replace("+00:00", "Z")
    # a naive datetime is UTC
    naive = temporal_split(events, at=at.replace(tzinfo=None))
    np.testing.assert_array_equal(naive.test_mask, split.test_mask)


def test_temporal_split_by_fraction_respects_time():
    events = make_events(seed=4)
    split = temporal_split(events, test_fraction=0.25, weighting=NO_DECAY)
    check_partition(events, split)
    times = events.column("timestamp").cast(pa.int64()).to_numpy()
    assert times[~split.test_mask].max() < times[split.test_mask].min()
    assert split.test_mask.sum() == round(0.25 * events.num_rows)  # no tied times at the cut here


def test_temporal_split_sends_ties_at_the_cut_to_test():
    events = table([0, 1, 2, 3], [0, 0, 1, 1], [1, 2, 2, 3])
    split = temporal_split(events, test_fraction=0.5)
    assert split.test_mask.tolist() == [False, True, True, True]


def test_temporal_split_reports_test_only_users_and_items():
    # u0 and u1 are active before and after the cut; u2 appears only after it, and so does i9
    events = table([0, 1, 0, 1, 2, 2, 0], [0, 1, 1, 0, 0, 9, 9], [1, 2, 3, 10, 11, 12, 13])
    split = temporal_split(events, at=datetime.fromtimestamp(10, tz=UTC))
    assert list(split.test_only_users) == ["u2"]
    assert list(split.test_only_items) == ["i9"]
    assert split.dropped_test == 3  # u2's two events and u0's event on i9
    assert interactions_pairs(split.test) == {("u1", "i0"): 1.0}
    assert split.users_without_test == 0
    summary = split.summary()
    assert (summary["test_only_users"], summary["test_only_items"], summary["dropped_test"]) == (1, 1, 3)


def test_temporal_split_needs_exactly_one_cut():
    events = make_events()
    with pytest.raises(ValueError, match="exactly one"):
        temporal_split(events)
    with pytest.raises(ValueError, match="exactly one"):
        temporal_split(events, at=datetime(2020, 1, 1), test_fraction=0.2)
    with pytest.raises(ValueError, match="datetime"):
        temporal_split(events, at=12345)  # type: ignore[arg-type]


def test_the_train_part_is_built_with_the_given_weighting():
    events = table([0, 0, 1, 1, 1], [0, 1, 0, 1, 2], [0, 86_400, 0, 86_400, 172_800], event_type="view")
    split = leave_last_n_split(events, 1, weighting=Weighting({"view": 2.0}, half_life_days=1.0))
    # train: u0 i0, u1 i0 (day 0), u1 i1 (day 1, the newest train event: the decay reference);
    # weight 2, half-life 1 day: day-0 events count 2 * 0.5
    assert interactions_pairs(split.train) == pytest.approx(
        {("u0", "i0"): 1.0, ("u1", "i0"): 1.0, ("u1", "i1"): 2.0}
    )
    # test: no decay, same weights; i2 occurs only in test, so it is dropped and reported
    assert interactions_pairs(split.test) == pytest.approx({("u0", "i1"): 2.0})
    assert list(split.test_only_items) == ["i2"] and split.dropped_test == 1


def test_per_user_folds_hold_out_disjoint_parts_of_each_user():
    """Tuning's folds (issue 16): disjoint test parts, each about the fraction of every user's
    pairs, train parts keeping the rest; one fold is random_split with the same seed."""
    from recforge.evaluation import per_user_folds

    rng = np.random.default_rng(0)
    m = sp.random(60, 40, density=0.3, format="csr", random_state=2, dtype=np.float32)
    m.data = rng.integers(1, 6, m.nnz).astype(np.float32)
    data = Interactions.from_csr(m)
    folds = per_user_folds(data, 3, 0.2, random_state=5)
    masks = np.array([f.test_mask for f in folds])
    assert masks.sum(axis=0).max() == 1  # every pair in at most one test part
    counts = np.diff(m.indptr)
    for fold in folds:
        per_user = np.bincount(np.repeat(np.arange(60), counts)[fold.test_mask], minlength=60)
        expected = np.minimum(np.floor(0.2 * counts + 0.5), (counts - 1) // 3)
        np.testing.assert_array_equal(per_user, expected)
        assert fold.train.nnz + int(fold.test_mask.sum()) == m.nnz
    single = per_user_folds(data, 1, 0.2, random_state=5)[0]
    np.testing.assert_array_equal(single.test_mask, random_split(data, 0.2, random_state=5).test_mask)
    with pytest.raises(ValueError, match="more than everything"):
        per_user_folds(data, 6, 0.2)
