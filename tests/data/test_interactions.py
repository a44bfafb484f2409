from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.data.schema import EVENT_SCHEMA
from recforge.data.vocabulary import Vocabulary
from recforge.weighting import Weighting

T0 = datetime(2024, 1, 31, tzinfo=UTC)


def events(rows):
    """rows of (user, item, type, value, days_before_T0)"""
    return pa.table(
        {
            "event_id": [None] * len(rows),
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "value": [float(r[3]) for r in rows],
            "timestamp": [T0 - timedelta(days=r[4]) for r in rows],
            "recommendation_id": [None] * len(rows),
        },
        schema=EVENT_SCHEMA,
    )


def test_hand_computed_r_ui():
    table = events(
        [
            ("u1", "a", "view", 1, 0),  # 1
            ("u1", "a", "purchase", 1, 10),  # 16 * 0.5 = 8
            ("u1", "b", "like", 2, 20),  # 4 * 2 * 0.25 = 2
            ("u2", "a", "cart", 1, 30),  # 8 * 0.125 = 1
        ]
    )
    x = Interactions.from_events(table, Weighting(half_life_days=10), as_of=T0)
    assert list(x.users.ids()) == ["u1", "u2"]
    assert list(x.items.ids()) == ["a", "b"]
    np.testing.assert_allclose(x.matrix.toarray(), [[9.0, 2.0], [1.0, 0.0]])
    assert x.matrix.dtype == np.float32
    assert x.info["events"] == 4
    assert x.info["reference_time"] == x.info["as_of"] == "2024-01-31T00:00:00Z"
    assert x.info["first"] == "2024-01-01T00:00:00Z"
    assert x.ratings is None


def test_no_decay_and_custom_weights_and_reference_time():
    table = events([("u", "a", "view", 1, 5), ("u", "a", "share", 1, 0)])
    x = Interactions.from_events(table, Weighting({"view": 2.0}, half_life_days=None))
    np.testing.assert_allclose(x.matrix.toarray(), [[3.0]])  # share not listed -> 1.0
    y = Interactions.from_events(
        table, Weighting({"view": 1.0, "share": 1.0}, half_life_days=5, reference_time=T0 + timedelta(days=5))
    )
    np.testing.assert_allclose(y.matrix.toarray(), [[0.25 + 0.5]])


def test_latest_rating_view_and_nonpositive_dropped():
    table = events(
        [
            ("u", "a", "rating", 2, 9),
            ("u", "a", "rating", 5, 1),  # newest rating wins
            ("u", "b", "rating", 3, 3),
            ("v", "b", "view", 0, 0),  # value 0: r = 0, not a preference
        ]
    )
    x = Interactions.from_events(table, Weighting(half_life_days=None))
    np.testing.assert_allclose(x.ratings.toarray(), [[5, 3], [0, 0]])
    assert x.matrix[1, 1] == 0 and x.matrix.nnz == 2


def test_fixed_vocabularies_drop_unknown():
    table = events([("u1", "a", "view", 1, 0), ("zz", "a", "view", 1, 0), ("u1", "q", "view", 1, 0)])
    x = Interactions.from_events(table, users=Vocabulary(["u0", "u1"]), items=Vocabulary(["a"]), as_of=T0)
    assert x.shape == (2, 1)
    assert x.info["dropped"] == 2
    np.testing.assert_allclose(x.matrix.toarray(), [[0], [1]])


def test_ages_are_measured_from_the_as_of_time_never_the_newest_event():
    # issue 14: one event dated 9999 made every other weight ~0 ("1 pairs from 4,013 events")
    rows = [("u1", "a", "view", 1, 0), ("u2", "b", "view", 1, 10)]
    future = events([*rows, ("u3", "c", "view", 1, 0)])
    future = future.set_column(
        5,
        "timestamp",
        pa.array(
            [T0, T0 - timedelta(days=10), datetime(9999, 1, 1, tzinfo=UTC)],
            EVENT_SCHEMA.field("timestamp").type,
        ),
    )
    x = Interactions.from_events(future, Weighting(half_life_days=10), as_of=T0)
    np.testing.assert_allclose(x.matrix.toarray(), np.diag([1.0, 0.5, 1.0]))  # the future counts as age 0
    assert x.info["vanished"] == 0
    with pytest.raises(ValueError, match="needs an as-of time"):
        Interactions.from_events(events(rows), Weighting(half_life_days=10))
    # built as of 2,000 days later, 200 half-lives: below float32's range, counted as vanished
    late = Interactions.from_events(
        events(rows), Weighting(half_life_days=10), as_of=T0 + timedelta(days=2000)
    )
    assert late.nnz == 0 and late.info["vanished"] == 2


def test_empty_events():
    x = Interactions.from_events(events([]))
    assert x.shape == (0, 0) and x.nnz == 0


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(tmp_path, mmap):
    table = events([("u1", "a", "rating", 4, 0), ("u2", "b", "view", 1, 3)])
    x = Interactions.from_events(table, as_of=T0)
    y = Interactions.load(x.save(tmp_path / "ix"), mmap=mmap)
    assert (y.matrix != x.matrix).nnz == 0
    assert (y.ratings != x.ratings).nnz == 0
    assert y.users == x.users and y.items == x.items
    assert y.info == x.info


def test_from_csr_default_ids_and_shape_check():
    x = Interactions.from_csr(sp.csr_matrix(np.array([[0, 1.0], [2.0, 0]])))
    assert list(x.users.ids()) == ["0", "1"]
    with pytest.raises(ValueError, match="shape"):
        Interactions(x.matrix, Vocabulary(["a"]), x.items)
