"""Erasure (issue 14): a deletion hides events from every read at once, compaction removes them
from disk, and the next build does not see them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recforge._time import to_us
from recforge.cli.main import main
from recforge.config import Config
from recforge.data.build import build_interactions
from recforge.data.schema import EVENT_SCHEMA
from recforge.data.store import EventStore
from recforge.data.tombstones import Tombstones
from recforge.errors import RecforgeError

T0 = datetime(2024, 3, 1, tzinfo=UTC)
DELETED_AT = to_us(T0 + timedelta(days=30))


def events(rows):
    """rows of (event_id, user, item, days after T0)"""
    return pa.table(
        {
            "event_id": [r[0] for r in rows],
            "user_id": [r[1] for r in rows],
            "item_id": [r[2] for r in rows],
            "event_type": ["view"] * len(rows),
            "value": [1.0] * len(rows),
            "timestamp": [T0 + timedelta(days=r[3]) for r in rows],
            "recommendation_id": [None] * len(rows),
        },
        schema=EVENT_SCHEMA,
    )


ROWS = [
    ("a1", "alice", "x", 0),
    ("a2", "alice", "y", 1),
    ("a3", "alice", "x", 2),
    ("b1", "bob", "x", 0),
    ("b2", "bob", "y", 3),
    ("c1", "carol", "y", 1),
]


def ids(store, **kwargs):
    return sorted(store.scan(["event_id"], **kwargs).column("event_id").to_pylist())


def test_deleted_events_are_invisible_at_once_and_gone_after_compaction(tmp_path):
    store = EventStore(tmp_path)
    store.append(events(ROWS[:3]))
    store.append(events(ROWS[3:]))
    store.tombstones.add("alice", now_us=DELETED_AT)
    store.tombstones.add("bob", item_id="y", now_us=DELETED_AT)
    assert ids(store) == ["b1", "c1"]
    assert ids(EventStore(tmp_path)) == ["b1", "c1"]  # another reader (process) sees it too
    stats = store.stats()
    assert (stats["events"], stats["users"]) == (2, 2)

    # the same events sent again stay hidden; events after the deletion are the user's to keep
    store.append(events([("a1", "alice", "x", 0), ("a9", "alice", "z", 31), ("b9", "bob", "y", 31)]))
    assert ids(store) == ["a9", "b1", "b9", "c1"]

    result = store.compact(target_rows=2)  # segments of 3, 3 and 2 rows: none merged...
    assert result.erased == 4 and result.merged == 0  # ...but each rewritten without its erased rows
    on_disk = pa.concat_tables([pq.read_table(s.path) for s in store.segments()])
    assert sorted(on_disk.column("event_id").to_pylist()) == ["a9", "b1", "b9", "c1"]
    assert ids(store) == ["a9", "b1", "b9", "c1"]
    assert store.compact(target_rows=2).erased == 0  # nothing left to remove
    # the dedupe index follows the rewritten segments: a new event is stored, a repeat is not
    with store.writer() as writer:
        assert writer.write(events([("c2", "carol", "x", 4), ("c1", "carol", "y", 1)])) == (1, 1)
        writer.commit()


def test_before_and_item_scope_a_deletion(tmp_path):
    store = EventStore(tmp_path)
    store.append(events(ROWS))
    stone = store.tombstones.add("alice", before=T0 + timedelta(days=1, hours=12), now_us=DELETED_AT)
    assert stone.before_us == to_us(T0 + timedelta(days=1, hours=12))
    assert ids(store) == ["a3", "b1", "b2", "c1"]
    store.tombstones.add("carol", item_id="x", now_us=DELETED_AT)  # carol has no event on x
    assert ids(store) == ["a3", "b1", "b2", "c1"]
    # without --before, the deletion covers every event stored before it: up to its time plus the
    # clock skew the accepted window allows, no later
    late = store.tombstones.add("bob", max_future_seconds=300, now_us=DELETED_AT)
    assert late.before_us == DELETED_AT + 300_000_000
    assert store.tombstones.add("bob", before=T0 + timedelta(days=999), now_us=DELETED_AT).before_us == (
        DELETED_AT
    )  # a later --before is capped at the deletion time


def test_a_half_written_tombstone_is_no_deletion(tmp_path):
    store = EventStore(tmp_path)
    store.append(events(ROWS))
    store.tombstones.add("bob", now_us=DELETED_AT)
    with store.tombstones.path.open("a") as handle:
        handle.write('{"id": "torn", "user_id": "alice", "item_')  # a crash mid-append
    assert [s.user_id for s in Tombstones(store.root).read()] == ["bob"]
    assert ids(store) == ["a1", "a2", "a3", "c1"]
    with pytest.raises(RecforgeError, match="needs a user id"):
        store.tombstones.add("")


def test_the_next_build_leaves_them_out(tmp_path):
    store = EventStore(tmp_path)
    store.append(events(ROWS))
    config = Config()
    config.weighting.half_life_days = 0
    before = build_interactions(store, config)
    store.tombstones.add("alice", now_us=DELETED_AT)
    after = build_interactions(store, config)
    assert "alice" in before.users.ids().tolist() and "alice" not in after.users.ids().tolist()
    assert after.info["events"] == 3


def test_events_delete_and_compact_commands(tmp_path, capsys):
    EventStore(tmp_path).append(events(ROWS))
    assert main(["--home", str(tmp_path), "events", "delete", "--user", "alice", "--item", "x"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("erased 2 events of user 'alice' on item 'x' stamped before ")
    assert main(["--home", str(tmp_path), "events", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 4
    assert main(["--home", str(tmp_path), "events", "compact"]) == 0
    assert "2 erased events removed from disk" in capsys.readouterr().out
