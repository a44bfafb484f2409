"""Spark's build (issue 13): the column expression generated from a ``Weighting`` gives the
same matrix as the local build on the same events."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from recforge._time import to_us
from recforge.config import Config
from recforge.data.build import build_interactions
from recforge.data.generate import generate_events
from recforge.data.interactions import Interactions
from recforge.data.store import EventStore
from recforge.spark.build import events_frame, strength_column, weighted_pairs
from recforge.weighting import Weighting

pytestmark = pytest.mark.spark

COLUMNS = ["user_id", "item_id", "event_type", "value", "timestamp"]


#: The builds' as-of time: two days after the generated events end (they start 2024-01-01).
AS_OF = datetime(2024, 2, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    store = EventStore(home)
    store.append(generate_events(users=60, items=25, events=1_200, days=30, seed=11))
    # a second segment whose events have a type no weighting below lists: it weighs 1.0
    shared = generate_events(users=60, items=25, events=300, days=30, seed=12)
    types = pa.array(["share"] * shared.num_rows, pa.large_string())
    store.append(shared.set_column(shared.schema.get_field_index("event_type"), "event_type", types))
    # a segment as written before events had a recommendation_id (issue 18): Spark reads it beside
    # the others
    old = generate_events(users=60, items=25, events=200, days=30, seed=13)
    assert "recommendation_id" not in old.column_names
    pq.write_table(old, store.root / "seg-0000000003-0000000003.parquet")
    assert EventStore(home).scan().column("recommendation_id").null_count == 1_700
    # issue 14: what a build never reads: load-test events, events after its as-of time, erased ones
    extra = generate_events(users=60, items=25, events=200, days=30, seed=13)
    ids = pa.array(["loadtest-" + e for e in extra.column("event_id").to_pylist()], pa.large_string())
    store.append(extra.set_column(0, "event_id", ids))
    late = generate_events(users=60, items=25, events=100, days=1, seed=14)
    late_times = pc.add(late.column("timestamp"), pa.scalar(40 * 86_400_000_000, pa.duration("us")))
    store.append(late.set_column(5, "timestamp", late_times))
    store.tombstones.add("u3", now_us=to_us(datetime(2024, 3, 1, tzinfo=UTC)))
    store.tombstones.add("u4", item_id="i1", now_us=to_us(datetime(2024, 3, 1, tzinfo=UTC)))
    return home


def settings(weights=None, half_life_days=30.0, reference_time=""):
    config = Config()
    if weights is not None:
        config.weighting.weights = weights
    config.weighting.half_life_days = half_life_days
    config.weighting.reference_time = reference_time
    return config


@pytest.mark.parametrize(
    "config",
    [
        settings(),  # the defaults: decay on, ages from the newest event
        settings(half_life_days=0.0),  # decay off
        # cart and share are not listed: they weigh 1.0
        settings(weights={"view": 2.0, "like": 0.5, "purchase": 10.0}, half_life_days=3.0),
        settings(weights={"view": 1.0, "share": 0.0}, reference_time="2030-01-01T00:00:00Z"),
    ],
    ids=["defaults", "no-decay", "custom-weights", "reference-time"],
)
def test_spark_pairs_equal_the_local_build(spark, home, config):
    local = build_interactions(EventStore(home), config, as_of=AS_OF)
    assert "share" in EventStore(home).scan(["event_type"]).column("event_type").to_pylist()
    base = pa.concat_tables(
        [
            generate_events(users=60, items=25, events=n, days=30, seed=seed)
            for n, seed in ((1_200, 11), (300, 12), (200, 13))  # 13: the segment written before issue 18
        ]
    )
    user, item = base.column("user_id"), base.column("item_id")
    erased = pc.or_(pc.equal(user, "u3"), pc.and_(pc.equal(user, "u4"), pc.equal(item, "i1")))
    assert local.info["events"] == 1_700 - pc.sum(erased).as_py() and "u3" not in local.users.ids().tolist()
    pairs = events_frame(spark, home, config, as_of=AS_OF).toPandas()
    rows = local.users.lookup(pairs["user"].tolist())
    cols = local.items.lookup(pairs["item"].tolist())
    assert (rows >= 0).all() and (cols >= 0).all()
    remote = sp.csr_matrix((pairs["value"].to_numpy(), (rows, cols)), shape=local.shape)
    remote.sort_indices()
    assert remote.nnz == local.nnz == len(pairs)  # the same pairs...
    np.testing.assert_array_equal(remote.indptr, local.matrix.indptr)
    np.testing.assert_array_equal(remote.indices, local.matrix.indices)
    np.testing.assert_allclose(remote.data, local.matrix.data, rtol=1e-6)  # ...to float32 rounding


def test_the_column_is_the_weightings_strength(spark):
    """Event by event, on a few hand-made events (one newer than the reference time)."""
    reference = datetime(2024, 1, 31, tzinfo=UTC)
    weighting = Weighting({"view": 1.0, "purchase": 16.0}, half_life_days=10.0, reference_time=reference)
    events = generate_events(users=5, items=5, events=40, days=40, seed=3)
    types = pc.dictionary_encode(events.column("event_type")).combine_chunks()
    timestamps = events.column("timestamp").cast(pa.int64()).to_numpy()
    expected = weighting.strength(
        types.indices.to_numpy(),
        [str(t) for t in types.dictionary.to_pylist()],
        events.column("value").to_numpy(),
        timestamps,
    )
    frame = spark.createDataFrame(events.select(COLUMNS).to_pandas())
    got = [row[0] for row in frame.select(strength_column(weighting)).collect()]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_decay_needs_a_reference_time(spark):
    with pytest.raises(ValueError, match="reference time"):
        strength_column(Weighting())
    events = generate_events(users=5, items=5, events=40, days=40, seed=3)
    local = Interactions.from_events(events, Weighting(half_life_days=2.0), as_of=AS_OF)
    frame = spark.createDataFrame(events.select(COLUMNS).to_pandas())
    with pytest.raises(ValueError, match="reference time"):
        weighted_pairs(frame, Weighting(half_life_days=2.0))
    pairs = weighted_pairs(frame, Weighting(half_life_days=2.0).as_of(AS_OF)).toPandas()
    assert len(pairs) == local.nnz
    np.testing.assert_allclose(sorted(pairs["value"]), sorted(local.matrix.data), rtol=1e-6)
