"""The synthetic marketplace: reproducible, shaped as promised, with a learnable taste structure."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recforge.data.generate import generate_events, write_events
from recforge.data.schema import EVENT_SCHEMA
from recforge.errors import RecforgeError


def test_seeded_reproducible_and_ids_unique_across_seeds():
    a = generate_events(300, 100, 5_000, 10, seed=1)
    assert a.schema == pa.schema(list(EVENT_SCHEMA)[:-1]) and a.num_rows == 5_000
    assert a.equals(generate_events(300, 100, 5_000, 10, seed=1))
    b = generate_events(300, 100, 5_000, 10, seed=2)
    assert not a.column("user_id").equals(b.column("user_id"))
    ids_a, ids_b = set(a.column("event_id").to_pylist()), set(b.column("event_id").to_pylist())
    assert len(ids_a) == 5_000 and not ids_a & ids_b
    assert not ids_a & set(generate_events(300, 100, 6_000, 10, seed=1).column("event_id").to_pylist())


def test_shape_of_the_data():
    table = generate_events(2_000, 500, 200_000, 30, seed=0)
    counts = dict(zip(*(pc.value_counts(table.column("event_type")).flatten()), strict=True))
    counts = {k.as_py(): v.as_py() for k, v in counts.items()}
    assert counts["view"] > 5 * counts["like"] > 5 * counts["cart"] and counts["cart"] > counts["purchase"]
    ts = table.column("timestamp").cast("int64").to_numpy()
    assert (np.diff(ts) >= 0).all() and ts[-1] - ts[0] < 30 * 86_400 * 1_000_000
    items = np.sort(pc.value_counts(table.column("item_id")).field("counts").to_numpy())[::-1]
    assert items[:25].sum() > 0.25 * items.sum()  # Zipf-like head
    users = pc.value_counts(table.column("user_id")).field("counts").to_numpy()
    assert users.max() > 10 * np.median(users)  # lognormal activity: a long tail of heavy users


def test_bad_parameters():
    with pytest.raises(RecforgeError, match="users"):
        generate_events(users=0)
    with pytest.raises(RecforgeError, match="days"):
        generate_events(days=0)
    with pytest.raises(RecforgeError, match="extension"):
        write_events(generate_events(10, 10, 10), "out.xml")


def precision_at_10(scores, train, test):
    scores = np.where(train.toarray() > 0, -np.inf, scores)
    top = np.argsort(-scores, axis=1)[:, :10]
    hits = np.take_along_axis(test.toarray() > 0, top, axis=1)
    return hits.mean()


def test_a_factor_model_beats_popularity_on_a_temporal_holdout():
    """Truncated SVD of the first 80% of time predicts the last 20% far better than popularity."""
    table = generate_events(3_000, 600, 150_000, 60, seed=3)
    n = table.num_rows
    users = pc.dictionary_encode(table.column("user_id")).combine_chunks()
    items = pc.dictionary_encode(table.column("item_id")).combine_chunks()
    u, i = users.indices.to_numpy(), items.indices.to_numpy()
    shape = (len(users.dictionary), len(items.dictionary))
    cut = int(0.8 * n)  # events are sorted by time
    train = sp.csr_matrix((np.ones(cut), (u[:cut], i[:cut])), shape=shape)
    test = sp.csr_matrix((np.ones(n - cut), (u[cut:], i[cut:])), shape=shape)
    test = test - test.multiply(train > 0)  # only new items count
    test.eliminate_zeros()
    active = np.flatnonzero((np.diff(test.indptr) > 0) & (np.diff(train.indptr) > 0))
    train, test = train[active], test[active]

    popularity = np.asarray(train.sum(axis=0)).ravel()
    p_pop = precision_at_10(np.tile(popularity, (len(active), 1)), train, test)
    weighted = train.copy()
    weighted.data = np.log1p(weighted.data)
    left, sigma, right = svds(weighted, k=16, random_state=0)
    p_svd = precision_at_10(left * sigma @ right, train, test)
    assert p_svd > 1.8 * p_pop, (p_svd, p_pop)  # measured: 0.12 against 0.053


@pytest.mark.parametrize("name", ["e.csv", "e.jsonl", "e.parquet", "e.csv.gz", "e.jsonl.gz"])
def test_written_files_read_back_as_the_same_events(tmp_path, name):
    from recforge.config import DataConfig
    from recforge.data.readers import Source
    from recforge.data.validation import validate_table

    table = generate_events(100, 30, 2_000, 400, seed=5)  # spans a leap day
    path = write_events(table, tmp_path / name)
    chunks = []
    for chunk in Source(path).chunks(700):
        good, rejected = validate_table(chunk.table, DataConfig(), source=name, locations=chunk.locations)
        assert not rejected
        chunks.append(good)
    read = pa.concat_tables(chunks)
    assert read.column("recommendation_id").null_count == read.num_rows  # they follow none
    assert read.drop_columns(["recommendation_id"]).equals(table)


def test_stable_order_equals_a_stable_argsort():
    from recforge.data.generate import _stable_order

    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 1_000, 100_001):
        keys = rng.integers(0, 50, n)
        np.testing.assert_array_equal(_stable_order(keys), np.argsort(keys, kind="stable"))
    big = np.array([2**60, 3, 2**60, 1])  # too wide to pack: falls back to argsort
    np.testing.assert_array_equal(_stable_order(big), [3, 1, 0, 2])


def test_true_tastes_are_the_next_event_distribution(tmp_path):
    """Issue 18: the saved tastes give each user's next-event distribution over items; the
    generated events follow it (sessions cluster a user's events, so the fit is checked by
    correlation, not by a test of independent draws), it sums to 1, and it round-trips through
    the file beside the events."""
    from recforge.data.generate import Tastes, generate_with_tastes, tastes_path

    table, tastes = generate_with_tastes(500, 80, 60_000, 30, seed=7)
    assert table.equals(generate_events(500, 80, 60_000, 30, seed=7))
    everyone = np.repeat(np.arange(tastes.n_users), tastes.n_items)
    items = np.tile(np.arange(tastes.n_items), tastes.n_users)
    p = tastes.next_item_probability(everyone, items).reshape(tastes.n_users, tastes.n_items)
    assert np.allclose(p.sum(axis=1), 1.0)
    users = np.array([int(u[1:]) for u in table.column("user_id").to_pylist()])
    picked = np.array([int(i[1:]) for i in table.column("item_id").to_pylist()])
    observed = np.zeros_like(p)
    np.add.at(observed, (users, picked), 1)
    expected = observed.sum(axis=1, keepdims=True) * p
    assert np.corrcoef(observed.sum(axis=0), expected.sum(axis=0))[0, 1] > 0.99  # every item
    heavy = np.argsort(-observed.sum(axis=1))[:20]  # each heavy user fits their own tastes
    own = [np.corrcoef(observed[u], p[u])[0, 1] for u in heavy]
    others = [np.corrcoef(observed[u], p[(u + 1) % tastes.n_users])[0, 1] for u in heavy]
    assert np.median(own) > 0.8 and np.median(own) > np.median(others) + 0.3
    path = tastes.save(tastes_path(tmp_path / "events.csv.gz"))
    assert path.name == "events.tastes.npz"
    loaded = Tastes.load(path)
    assert np.array_equal(loaded.taste, tastes.taste) and np.array_equal(
        loaded.item_category, tastes.item_category
    )
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(RecforgeError, match="not a tastes file"):
        Tastes.load(tmp_path / "bad.npz")
