"""The catalog store: upsert semantics, change numbers, Kafka offsets, crash safety (issue 15)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import orjson
import pytest

from recforge.catalog import CatalogStore, ItemPatch
from recforge.catalog.ingest import ingest_items
from recforge.catalog.store import KafkaPositions
from recforge.config import Config
from recforge.errors import RecforgeError
from tests.conftest import REPO


def test_partial_upserts_change_only_their_fields(tmp_path):
    store = CatalogStore(tmp_path)
    assert store.stats() == {"items": 0, "available": 0, "categories": {}} and store.seq() == 0
    first = store.upsert(
        [
            ItemPatch("a", ("x", "y"), True, 1_000_000, {"title": "A", "price": 5}),
            ItemPatch("b", ("y",), None, None, None),
        ]
    )
    assert (first.items, first.new, first.first_seq, first.last_seq) == (2, 2, 1, 2)
    second = store.upsert(
        [ItemPatch("a", available=False, attributes={"price": 7, "title": None, "brand": "Z"})]
    )
    assert (second.new, second.first_seq) == (0, 3)
    a = store.get("a").to_dict()
    assert a == {
        "item_id": "a",
        "categories": ["x", "y"],
        "available": False,
        "created_at": "1970-01-01T00:00:01Z",
        "attributes": {"price": 7, "brand": "Z"},
    }
    b = store.get("b")
    assert b.available and b.created_at_us > 1_700_000_000_000_000  # defaults: available, first seen now
    assert store.get("nope") is None
    assert store.stats() == {"items": 2, "available": 1, "categories": {"x": 1, "y": 2}}


def test_replace_is_the_whole_record(tmp_path):
    store = CatalogStore(tmp_path)
    store.upsert([ItemPatch("a", ("x",), False, 5_000_000, {"title": "A"})])
    store.upsert([ItemPatch("a", attributes={"price": 1})], replace=True)
    assert store.get("a").to_dict() == {
        "item_id": "a",
        "categories": [],
        "available": True,
        "created_at": "1970-01-01T00:00:05Z",  # kept
        "attributes": {"price": 1},
    }


def test_changes_come_in_order_from_any_number(tmp_path):
    store = CatalogStore(tmp_path)
    store.upsert([ItemPatch(f"i{j}", ("c",)) for j in range(5)])
    store.upsert([ItemPatch("i1", available=False), ItemPatch("i9")])
    rows, nxt = store.rows(since=5)
    assert [(r.item_id, r.seq, r.available) for r in rows] == [("i1", 6, False), ("i9", 7, True)]
    assert nxt == 7 and store.rows(since=7) == ([], 7)
    everything, _ = store.rows()
    assert [r.item_id for r in everything] == ["i0", "i2", "i3", "i4", "i1", "i9"]
    assert [r.item_id for r in store.iter_rows(batch=2)] == [r.item_id for r in everything]


def test_kafka_offsets_make_a_replayed_batch_a_no_op(tmp_path):
    store = CatalogStore(tmp_path)
    batch = [ItemPatch("a", available=False), ItemPatch("b"), ItemPatch("a", available=True)]
    positions = KafkaPositions("items", [0, 1, 0], [10, 3, 11], {1: 6})  # offsets 4, 5 were bad
    done = store.upsert(batch, offsets=positions)
    assert (done.items, done.skipped) == (3, 0) and store.offsets("items") == {0: 12, 1: 6}
    again = store.upsert(batch, offsets=positions)
    assert (again.items, again.skipped) == (0, 3)
    assert store.get("a").available and store.seq() == 3
    later = KafkaPositions("items", [0, 0], [11, 12], {})
    partly = store.upsert([ItemPatch("a", available=False), ItemPatch("c")], offsets=later)
    assert (partly.items, partly.skipped) == (1, 1)
    assert store.get("c") is not None and store.get("a").available


def test_ingest_quarantines_bad_rows_and_is_idempotent(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,categories,available,price\na,x,true,1\nb,y,nah,2\n,z,true,3\nc,x|y,false,4\n")
    store = CatalogStore(tmp_path / "home")
    report = ingest_items(path, store, Config())
    assert (report.rows, report.upserted, report.new, report.rejected) == (4, 2, 2, 2)
    lines = [orjson.loads(line) for line in report.quarantine.read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in lines] == [
        (3, "available must be true or false, got 'nah'"),
        (4, "missing item_id"),
    ]
    again = ingest_items(path, store, Config())
    assert (again.upserted, again.new) == (2, 0)
    assert store.stats() == {"items": 2, "available": 1, "categories": {"x": 2, "y": 1}}
    with pytest.raises(RecforgeError, match=r"2 bad items \(first at line 3.*nothing stored \(--strict\)"):
        ingest_items(path, CatalogStore(tmp_path / "strict"), Config(), strict=True)
    assert CatalogStore(tmp_path / "strict").stats()["items"] == 0


def test_a_killed_upsert_leaves_all_or_nothing(tmp_path):
    """SIGKILL in the middle of a 300,000-item upsert: the store holds the items of before, or
    all of them, never a part (one SQLite transaction)."""
    store = CatalogStore(tmp_path)
    store.upsert([ItemPatch("before", ("x",))])
    code = textwrap.dedent(
        f"""
        import sys
        from recforge.catalog import CatalogStore, ItemPatch
        patches = [ItemPatch(f"k{{j}}", ("c",), True, None, {{"title": "t" * 50}}) for j in range(300_000)]
        print("go", flush=True)
        CatalogStore({str(tmp_path)!r}).upsert(patches)
        print("done", flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True)
    assert child.stdout.readline().strip() == "go"
    wal = tmp_path / "catalog" / "catalog.sqlite-wal"
    deadline = time.monotonic() + 60
    while wal.stat().st_size < 4 << 20 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # kill once the transaction has written megabytes of its pages
    assert child.poll() is None, "the upsert finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    items = CatalogStore(tmp_path).stats()["items"]
    assert items in (1, 300_001), items
    assert CatalogStore(tmp_path).get("before") is not None
