"""The pipeline's build on Spark: the same temporal holdout split as on one machine (issue 19)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from recforge.config import Config
from recforge.data.generate import generate_events
from recforge.data.interactions import Interactions
from recforge.data.schema import EVENT_SCHEMA
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.pipeline.engine import LocalEngine
from recforge.pipeline.holdout import Holdout
from recforge.spark.holdout import holdout_split, kth_smallest

pytestmark = pytest.mark.spark


def events(**fields):
    n = len(fields["user_id"])
    columns = {
        "event_id": [None] * n,
        "recommendation_id": [None] * n,
        "event_type": ["rating"] * n,
        "value": [1.0] * n,
        **fields,
    }
    return pa.table({name: columns[name] for name in EVENT_SCHEMA.names}, schema=EVENT_SCHEMA)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    store = EventStore(home)
    first = generate_events(users=70, items=30, events=1_400, days=20, seed=21)
    store.append(first)
    store.append(generate_events(users=70, items=30, events=600, days=20, seed=22))
    # ratings: a pair rated twice at the same time in two segments (the later segment's wins),
    # a user and an item seen only after the cut, a negative value
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    late = first.column("timestamp")[-1].as_py() + timedelta(hours=1)
    store.append(
        events(
            user_id=["u1", "u1", "u2", "u9999", "u3"],
            item_id=["i1", "i2", "i1", "i1", "i9999"],
            value=[4.0, 5.0, -1.0, 3.0, 2.0],
            timestamp=[t0, t0, t0, late, late],
        )
    )
    store.append(events(user_id=["u1"], item_id=["i1"], value=[2.0], timestamp=[t0]))
    return home


def assert_same_part(got: Interactions, want: Interactions) -> float:
    """Equal vocabularies, pairs, ratings and info; returns the share of ``r`` equal bit for bit."""
    assert got.users == want.users and got.items == want.items
    np.testing.assert_array_equal(got.matrix.indptr, want.matrix.indptr)
    np.testing.assert_array_equal(got.matrix.indices, want.matrix.indices)
    np.testing.assert_allclose(got.matrix.data, want.matrix.data, rtol=1e-6)
    assert (got.ratings is None) == (want.ratings is None)
    if want.ratings is not None:
        assert (got.ratings != want.ratings).nnz == 0
    assert got.info == want.info
    return float(np.mean(got.matrix.data == want.matrix.data))


@pytest.mark.parametrize(
    ("holdout", "half_life"),
    [
        (Holdout(fraction=0.2), 7.0),
        (Holdout(days=3.5), 0.0),
        (Holdout(at=datetime(2024, 1, 15, 6, tzinfo=UTC)), 30.0),
    ],
    ids=["fraction-decay", "days-no-decay", "at-decay"],
)
def test_same_split_as_the_local_engine(spark, home, holdout, half_life):
    config = Config()
    config.weighting.half_life_days = half_life
    want = LocalEngine().split(home, holdout, config)
    got = holdout_split(spark, home, holdout, config)
    # when each read the store differs; everything the split is made of does not
    got_read, want_read = got.summary.pop("read_at"), want.summary.pop("read_at")
    assert want_read <= got_read
    assert got.summary == want.summary
    exact = assert_same_part(got.train, want.train)
    assert exact > 0.99  # float64 sums in another order, pow for exp2: rare last-bit differences
    assert assert_same_part(got.test, want.test) == 1.0  # no decay: sums of small integers


def test_a_cut_that_leaves_one_side_empty_is_the_same_error(spark, home):
    config = Config()
    holdout = Holdout(at=datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(RecforgeError) as local:
        LocalEngine().split(home, holdout, config)
    with pytest.raises(RecforgeError) as remote:
        holdout_split(spark, home, holdout, config)
    assert str(remote.value) == str(local.value)


def test_kth_smallest_is_exact(spark):
    rng = np.random.default_rng(3)
    values = rng.integers(0, 50, 5_000)  # many ties
    frame = spark.createDataFrame(pa.table({"t": values}))
    ordered = np.sort(values)
    for rank in (0, 1, 2_499, 4_998, 4_999):
        assert kth_smallest(frame, "t", rank, len(values)) == ordered[rank]
