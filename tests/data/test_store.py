"""The event store: dedupe, idempotence, windows, stats, compaction, crash safety, concurrency."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from recforge.data.schema import EVENT_SCHEMA
from recforge.data.store import EventStore
from tests.conftest import REPO


def events(ids, users=None, start=0, with_ids=True):
    """Events with ids ``e<n>`` for n in ``ids`` (or no ids), one per second from ``start``."""
    ids = np.asarray(list(ids))
    n = len(ids)
    return pa.table(
        {
            "event_id": [f"e{i}" for i in ids] if with_ids else [None] * n,
            "user_id": users or [f"u{i % 7}" for i in ids],
            "item_id": [f"i{i % 11}" for i in ids],
            "event_type": ["view"] * n,
            "value": [1.0] * n,
            "timestamp": pa.array((start + ids) * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "recommendation_id": [None] * n,
        },
        schema=EVENT_SCHEMA,
    )


def ids_of(store):
    return sorted(store.scan(["event_id"]).column("event_id").to_pylist())


def test_append_dedupes_within_and_across_batches(tmp_path):
    store = EventStore(tmp_path)
    first = store.append(events([1, 2, 2, 3]))
    assert (first.accepted, first.duplicates) == (3, 1) and first.segment.exists()
    second = store.append(events([3, 4]))
    assert (second.accepted, second.duplicates) == (1, 1)
    again = store.append(events([1, 4]))
    assert (again.accepted, again.duplicates, again.segment) == (0, 2, None)
    assert ids_of(store) == ["e1", "e2", "e3", "e4"]
    assert len(store.segments()) == 2


def test_events_without_ids_get_content_ids_so_reingest_is_idempotent(tmp_path):
    store = EventStore(tmp_path)
    table = events(range(5), with_ids=False)
    assert store.append(table).accepted == 5
    assert store.append(table).duplicates == 5
    assert store.append(events(range(5), start=1, with_ids=False).slice(4)).accepted == 1
    stored = store.scan(["event_id"]).column("event_id").to_pylist()
    assert len(set(stored)) == 6 and all(i.startswith("~") for i in stored)


def test_scan_window_and_stats(tmp_path):
    store = EventStore(tmp_path)
    assert store.scan().num_rows == 0 and store.scan().schema == EVENT_SCHEMA
    assert store.stats()["events"] == 0
    store.append(events(range(10), start=1_704_067_200))
    window = store.scan(
        ["event_id", "timestamp"],
        start=datetime(2024, 1, 1, 0, 0, 3, tzinfo=UTC),
        end=datetime(2024, 1, 1, 0, 0, 6),  # naive means UTC
    )
    assert window.column("event_id").to_pylist() == ["e3", "e4", "e5"]
    assert window.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    stats = store.stats()
    assert {k: stats[k] for k in ("events", "users", "items", "first", "last", "segments")} == {
        "events": 10,
        "users": 7,
        "items": 10,
        "first": "2024-01-01T00:00:00Z",
        "last": "2024-01-01T00:00:09Z",
        "segments": 1,
    }
    assert stats["event_types"] == {"view": 10}
    with pytest.raises(ValueError, match="unknown event columns"):
        store.scan(["nope"])


def test_compaction_merges_adjacent_small_segments(tmp_path):
    store = EventStore(tmp_path)
    for k in range(5):
        store.append(events(range(10 * k, 10 * k + 10)))
    store.append(events(range(100, 200)))  # a big one in the middle stays
    store.append(events(range(50, 55)))
    before = ids_of(store)
    result = store.compact(target_rows=30)
    assert (result.before, result.merged, result.written) == (7, 5, 2)
    names = [s.name for s in store.segments()]
    assert names == [
        "seg-0000000001-0000000003.parquet",
        "seg-0000000004-0000000005.parquet",
        "seg-0000000006-0000000006.parquet",
        "seg-0000000007-0000000007.parquet",
    ]
    assert ids_of(store) == before
    assert store.append(events(range(0, 55))).accepted == 0  # the merged keys still dedupe
    assert sorted(os.listdir(tmp_path / "events" / "_index")) == sorted(f"{n}.keys.npy" for n in names)


def test_compaction_killed_after_its_rename_shows_each_event_once(tmp_path):
    store = EventStore(tmp_path)
    for k in range(3):
        store.append(events(range(10 * k, 10 * k + 10)))
    before = ids_of(store)
    # what a compaction leaves when killed between renaming the merged file and deleting inputs
    merged = pa.concat_tables([pa.parquet.read_table(s.path) for s in store.segments()])
    pa.parquet.write_table(merged, tmp_path / "events" / "seg-0000000001-0000000003.parquet")
    assert [s.name for s in store.segments()] == ["seg-0000000001-0000000003.parquet"]
    assert ids_of(store) == before and store.stats()["events"] == 30
    store.compact()
    assert sorted(p.name for p in (tmp_path / "events").glob("seg-*")) == [
        "seg-0000000001-0000000003.parquet"
    ]
    assert store.append(events([4, 99])).accepted == 1  # keys rebuilt from the segment


def test_lost_key_file_is_rebuilt(tmp_path):
    store = EventStore(tmp_path)
    store.append(events(range(5)))
    for path in (tmp_path / "events" / "_index").iterdir():
        path.write_bytes(b"garbage")
    assert EventStore(tmp_path).append(events(range(3, 8))).accepted == 3


def run_python(code, *args):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


WRITER = """
    import sys, time
    from recforge.data.store import EventStore
    from tests.data.test_store import events
    home, first, count, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    writer = EventStore(home).writer()
    for start in range(first, first + count, 1000):
        writer.write(events(range(start, min(start + 1000, first + count))))
    print("written", flush=True)
    from pathlib import Path
    while not Path(go).exists():
        time.sleep(0.01)
    result = writer.commit()
    print(result.accepted, result.duplicates, flush=True)
"""


def test_writer_killed_mid_segment_leaves_nothing_visible(tmp_path):
    store = EventStore(tmp_path)
    store.append(events(range(3)))
    proc = run_python(WRITER, tmp_path, 100, 5000, tmp_path / "never")
    assert proc.stdout.readline().strip() == "written"
    hidden = [p.name for p in (tmp_path / "events").iterdir() if p.name.startswith(".tmp-")]
    assert hidden  # the writer has a partial segment on disk...
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert ids_of(store) == ["e0", "e1", "e2"]  # ...which no reader sees
    assert len(store.segments()) == 1
    store.compact()
    assert not [p for p in (tmp_path / "events").iterdir() if p.name.startswith(".tmp-")]
    assert store.append(events(range(100, 103))).accepted == 3


@pytest.mark.slow
def test_two_processes_committing_at_once_lose_nothing_and_store_no_id_twice(tmp_path):
    EventStore(tmp_path)
    go = tmp_path / "go"
    a = run_python(WRITER, tmp_path, 0, 6000, go)
    b = run_python(WRITER, tmp_path, 3000, 6000, go)
    assert a.stdout.readline().strip() == "written" and b.stdout.readline().strip() == "written"
    go.touch()  # both saw an empty store; both commit now
    results = []
    for proc in (a, b):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(tuple(map(int, out.split())))
    assert sum(r[0] for r in results) == 9000 and sum(r[1] for r in results) == 3000
    stored = EventStore(tmp_path).scan(["event_id"]).column("event_id")
    assert len(stored) == 9000 and pc.count_distinct(stored).as_py() == 9000


LOOPER = """
    import sys
    from recforge.data.store import EventStore
    from tests.data.test_store import events
    home, offset = sys.argv[1], int(sys.argv[2])
    store = EventStore(home)
    accepted = 0
    for k in range(15):
        accepted += store.append(events(range(offset + 100 * k, offset + 100 * k + 300))).accepted
    print(accepted)
"""


@pytest.mark.slow
def test_concurrent_appends_and_compaction(tmp_path):
    store = EventStore(tmp_path)
    procs = [run_python(LOOPER, tmp_path, offset) for offset in (0, 50)]
    deadline = time.time() + 60
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        store.compact(target_rows=1000)
        time.sleep(0.05)
    accepted = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        accepted.append(int(out))
    stored = store.scan(["event_id"]).column("event_id")
    expected = {f"e{i}" for i in range(0, 1750)}
    assert set(stored.to_pylist()) == expected
    assert len(stored) == len(expected) == sum(accepted)


def test_key_index_stays_small_and_exact_across_many_segments_and_compaction(tmp_path):
    """A long-lived writer (the HTTP intake) checks batches against a merged key index, so the
    number of sorted key sets searched per batch grows like log(events), not like segments."""
    store = EventStore(tmp_path)
    for j in range(64):
        store.append(events(range(10 * j, 10 * j + 10)))
    assert len(store.segments()) == 64
    assert len(store.stored_keys(store.segments())) <= 8
    assert store.append(events([5, 315, 639, 640])).accepted == 1  # three were stored
    store.compact(target_rows=10_000)
    assert len(store.segments()) == 1
    assert store.append(events([0, 641, 640])).accepted == 1
    other = EventStore(tmp_path)  # another process: builds its index from the key files
    assert other.append(events([7, 641, 642])).accepted == 1
    assert store.append(events([642, 643])).accepted == 1  # sees the other process's commit
    assert len(ids_of(store)) == 644


def test_segments_written_before_recommendation_id_read_it_as_null(tmp_path):
    """Issue 18: the nullable column added at the end of the schema; old segments, scans, stats
    and compaction keep working, in either order of old and new segments."""
    store = EventStore(tmp_path)
    new = events(range(10)).set_column(6, "recommendation_id", pa.array(["r1"] * 10, pa.large_string()))
    store.append(new)
    old = events(range(10, 20)).drop_columns(["recommendation_id"])
    pq.write_table(old, store.root / "seg-0000000002-0000000002.parquet")
    scanned = store.scan()
    assert scanned.schema == EVENT_SCHEMA
    assert scanned.column("recommendation_id").to_pylist() == ["r1"] * 10 + [None] * 10
    assert store.stats()["events"] == 20
    assert store.append(events(range(15, 25))).accepted == 5  # dedupe sees the old segment's keys
    store.compact()
    assert len(store.segments()) == 1
    assert sorted(store.scan().column("recommendation_id").to_pylist(), key=str) == [None] * 15 + ["r1"] * 10
