"""Build: the stored events become exactly the hand-computed ``r_ui``, saved atomically."""

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from recforge._time import parse_time
from recforge.config import Config
from recforge.data.build import build_interactions, load_interactions, save_interactions
from recforge.data.schema import CONTENT_COLUMNS, EVENT_SCHEMA
from recforge.data.store import EventStore
from recforge.errors import RecforgeError

DAY = 86_400


def stored(tmp_path):
    t0 = int(datetime(2024, 1, 10, tzinfo=UTC).timestamp())
    rows = [  # user, item, type, value, seconds before t0
        ("a", "x", "view", 1.0, 0),
        ("a", "x", "purchase", 1.0, 2 * DAY),
        ("a", "y", "like", 1.0, 1 * DAY),
        ("b", "y", "rating", 4.0, 0),
        ("b", "y", "rating", 2.0, 3 * DAY),
        ("b", "z", "cart", 0.5, 4 * DAY),
    ]
    store = EventStore(tmp_path)
    store.append(
        pa.table(
            {
                "user_id": [r[0] for r in rows],
                "item_id": [r[1] for r in rows],
                "event_type": [r[2] for r in rows],
                "value": [r[3] for r in rows],
                "timestamp": pa.array([(t0 - r[4]) * 1_000_000 for r in rows]).cast(
                    pa.timestamp("us", tz="UTC")
                ),
            }
        ).cast(pa.schema([EVENT_SCHEMA.field(c) for c in CONTENT_COLUMNS]))
    )
    return store


def test_build_equals_a_hand_computation(tmp_path):
    config = Config()
    config.weighting.half_life_days = 1.0
    config.weighting.reference_time = "2024-01-11T00:00:00Z"  # one day after the newest event
    config.weighting.weights = {"view": 1.0, "like": 4.0, "cart": 8.0, "purchase": 16.0, "rating": 1.0}
    built = build_interactions(stored(tmp_path), config)
    assert built.users.ids().tolist() == ["a", "b"] and built.items.ids().tolist() == ["x", "y", "z"]
    expected = np.array(
        [
            [1 * 0.5**1 + 16 * 0.5**3, 4 * 0.5**2, 0],
            [0, 4 * 0.5**1 + 2 * 0.5**4, 8 * 0.5 * 0.5**5],
        ]
    )
    np.testing.assert_allclose(built.matrix.toarray(), expected, rtol=1e-6)
    np.testing.assert_array_equal(built.ratings.toarray(), [[0, 0, 0], [0, 4, 0]])  # the latest rating
    assert built.info["reference_time"] == "2024-01-11T00:00:00Z"
    assert built.info["window_start"] is None


def test_window_and_save(tmp_path):
    store = stored(tmp_path)
    config = Config()
    config.weighting.half_life_days = 0  # no decay
    built = build_interactions(store, config, start=parse_time("2024-01-09"), end=parse_time("2024-01-10"))
    assert built.info["events"] == 1 and built.info["window_start"] == "2024-01-09T00:00:00Z"
    np.testing.assert_allclose(built.matrix.toarray(), [[4.0]])
    link = save_interactions(built, tmp_path)
    first_target = link.resolve()
    assert load_interactions(tmp_path).matrix.toarray().tolist() == [[4.0]]
    save_interactions(build_interactions(store, config), tmp_path)
    save_interactions(build_interactions(store, config), tmp_path)
    assert link.resolve() != first_target and not first_target.exists()  # older builds pruned
    assert len(list((tmp_path / "interactions.builds").iterdir())) == 2
    assert load_interactions(tmp_path).shape == (2, 3)
    with pytest.raises(RecforgeError, match="no events in the given window"):
        build_interactions(store, config, start=parse_time("2030-01-01"))
    with pytest.raises(RecforgeError, match="not an ISO 8601"):
        parse_time("tomorrow")


def test_a_build_is_as_of_a_time_not_of_its_newest_event(tmp_path):
    # issue 14: one stored event dated 9999 was the decay reference of every build
    store = stored(tmp_path)
    config = Config()
    config.weighting.half_life_days = 1.0
    future = pa.table(
        {
            "event_id": ["from-the-future", "loadtest-1"],
            "user_id": ["c", "d"],
            "item_id": ["x", "x"],
            "event_type": ["view", "view"],
            "value": [1.0, 1.0],
            "timestamp": [datetime(9999, 1, 1, tzinfo=UTC), datetime(2024, 1, 10, tzinfo=UTC)],
            "recommendation_id": [None, None],
        },
        schema=EVENT_SCHEMA,
    )
    store.append(future)  # written past validation, as an older recforge let it in
    as_of = datetime(2024, 1, 11, tzinfo=UTC)
    built = build_interactions(store, config, as_of=as_of)
    assert built.info["as_of"] == built.info["reference_time"] == "2024-01-11T00:00:00Z"
    assert built.users.ids().tolist() == ["a", "b"]  # neither the future nor the load test
    assert built.nnz == 4 and built.info["last"] == "2024-01-10T00:00:00Z"
    assert built.matrix[0, 0] == pytest.approx(1 * 0.5**1 + 16 * 0.5**3)
    # built now, the events are ~1,000 half-lives old: nothing is left, and the error says why
    with pytest.raises(RecforgeError, match=r"decayed to nothing .*\(--as-of 2024-01-10T00:00:00Z\)"):
        build_interactions(store, config)


def test_build_command_as_of_and_its_notes(tmp_path, capsys):
    from recforge.cli.main import main

    stored(tmp_path)
    code = main(["--home", str(tmp_path), "build", "--as-of", "2024-01-11"])
    out, err = capsys.readouterr()
    assert code == 0 and "from 6 events as of 2024-01-11T00:00:00Z" in out and err == ""
    assert main(["--home", str(tmp_path), "build"]) == 0  # now: ~1,000 days after the data
    out, err = capsys.readouterr()
    assert "half-lives): every weight is below" in err and "give --as-of 2024-01-10T00:00:00Z" in err
