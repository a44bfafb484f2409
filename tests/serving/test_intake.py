"""Event intake: the fast column layout validates like the general one; group commits."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.config import Config
from recforge.data.store import EventStore
from recforge.data.validation import records_to_table, validate_table
from recforge.serving.fresh import MemoryFreshEvents
from recforge.serving.intake import EventIntake, columns_of

ids = st.one_of(st.text(max_size=6), st.integers(-5, 10**12), st.none())
numbers = st.one_of(st.floats(), st.integers(-(10**15), 10**15), st.text(max_size=12), st.none())
times = st.one_of(
    st.sampled_from(["2024-05-01", "2024-05-01T12:00:00Z", "2024-02-30", "soon", "", "1714564800"]),
    st.floats(-1e12, 1e12),
    st.integers(-(10**10), 10**10),
    st.none(),
)
record = st.fixed_dictionaries(
    {},
    optional={
        "event_id": ids,
        "user_id": ids,
        "item_id": ids,
        "event_type": st.one_of(st.sampled_from(["view", "like", "teleport"]), ids),
        "value": numbers,
        "timestamp": times,
    },
)


def validated(table, extra, not_objects, records):
    return validate_table(
        table,
        Config().data,
        source="http",
        locations={"index": np.arange(len(records))},
        raw=lambda rows: [records[int(r)] for r in rows],
        extra=extra,
        malformed=dict.fromkeys(not_objects, "not a JSON object"),
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(record, min_size=1, max_size=12))
def test_fast_columns_validate_like_the_general_layout(records):
    fast = columns_of(records)
    if fast is None:
        return
    good_fast, bad_fast = validated(fast, {}, [], records)
    good_slow, bad_slow = validated(*records_to_table(records), records)
    assert good_fast.equals(good_slow)
    # the same rows, for the same reasons (a number is quoted when it came as text)
    assert [(r.location, r.reason.replace("'", "")) for r in bad_fast] == [
        (r.location, r.reason.replace("'", "")) for r in bad_slow
    ]


def test_odd_records_take_the_general_layout():
    assert columns_of([{"user_id": "u", "value": True}]) is None
    assert columns_of([{"user_id": ["u"]}]) is None
    assert columns_of([{"user_id": 1.5}]) is None
    assert columns_of([{"user_id": "u"}, "x"]) is None
    assert columns_of([{"user_id": 2**70}]) is None
    assert columns_of([{"user_id": "u", "value": 1, "timestamp": 1.5}]) is not None


def test_requests_queued_together_are_one_commit_with_their_own_counts(tmp_path):
    store = EventStore(tmp_path)
    intake = EventIntake(
        store,
        Config(),
        MemoryFreshEvents(Config().serving.fresh_events_per_user, Config().serving.fresh_max_users),
        lambda: 0,
    )
    bodies = [
        b'[{"event_id": "a", "user_id": "u", "item_id": "i", "event_type": "view", "timestamp": 1}]',
        b'[{"event_id": "a", "user_id": "u", "item_id": "i", "event_type": "view", "timestamp": 1},'
        b' {"event_id": "b", "user_id": "u", "item_id": "i", "event_type": "view", "timestamp": 2}]',
        b'[{"user_id": "u"}]',
    ]
    intake._thread = object()  # accept submissions; the committer starts below, after all of them
    futures = [intake.submit(*intake.prepare(body)) for body in bodies]
    intake._thread = None
    intake.start()
    counts = [future.result(timeout=30) for future in futures]
    intake.stop()
    assert [(c.accepted, c.duplicates) for c in counts] == [(1, 0), (1, 1), (0, 0)]
    assert len(store.segments()) == 1 and store.stats()["events"] == 2
