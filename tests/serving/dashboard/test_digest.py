"""The event digest agrees with a scan of the store, grows by the new segments only, survives
compaction, merges small parts, and never leaves half a part behind."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recforge.data.generate import generate_events
from recforge.data.store import EventStore
from recforge.serving.dashboard import digest as digest_module
from recforge.serving.dashboard.digest import EventDigest


@pytest.fixture
def events() -> pa.Table:
    return generate_events(users=60, items=40, events=6000, days=10, seed=11)


def fill(home, table: pa.Table, parts: int) -> EventStore:
    store = EventStore(home)
    for chunk in np.array_split(np.arange(table.num_rows), parts):
        store.append(table.take(pa.array(chunk)))
    return store


def expected_hourly(table: pa.Table) -> dict[tuple[int, str], int]:
    hours = (table.column("timestamp").cast(pa.int64()).to_numpy() // 3_600_000_000).tolist()
    out: dict[tuple[int, str], int] = {}
    for hour, kind in zip(hours, table.column("event_type").to_pylist(), strict=True):
        out[(hour, kind)] = out.get((hour, kind), 0) + 1
    return out


def digested_hourly(digest: EventDigest) -> dict[tuple[int, str], int]:
    hourly = digest.hourly()
    out = {}
    for kind, counts in hourly.counts.items():
        for hour, count in zip(hourly.hours.tolist(), counts.tolist(), strict=True):
            if count:
                out[(hour, kind)] = count
    return out


def check_agrees(digest: EventDigest, table: pa.Table) -> None:
    assert digested_hourly(digest) == expected_hourly(table)
    assert digest.hourly().events == table.num_rows
    for user in ("u0", "u7", "u59", "nobody"):
        mine = table.filter(pc.equal(table.column("user_id"), user))
        found = digest.user_events(user, limit=25)
        assert found.total == mine.num_rows
        stamps = found.table.column("timestamp").cast(pa.int64()).to_numpy()
        assert (np.diff(stamps) <= 0).all()  # newest first
        newest = np.sort(mine.column("timestamp").cast(pa.int64()).to_numpy())[::-1][:25]
        assert stamps.tolist() == newest.tolist()
    for item in ("i0", "i3", "i39", "nothing"):
        mine = table.filter(pc.equal(table.column("item_id"), item))
        days = digest.item_days(item)
        assert days.events == mine.num_rows
        if mine.num_rows:
            by_day = np.bincount(mine.column("timestamp").cast(pa.int64()).to_numpy() // 86_400_000_000)
            total = sum(days.counts.values())
            assert total.tolist() == by_day[days.days].tolist()


def test_the_digest_agrees_with_a_scan_of_the_store(tmp_path, events):
    fill(tmp_path, events, parts=3)
    digest = EventDigest(tmp_path)
    assert digest.refresh() == 3
    check_agrees(digest, EventStore(tmp_path).scan())


def test_a_refresh_digests_only_the_new_segments(tmp_path, events):
    store = fill(tmp_path, events.slice(0, 4000), parts=2)
    digest = EventDigest(tmp_path)
    digest.refresh()
    before = {p.path.name: p.path.stat().st_mtime_ns for p in digest.parts}
    store.append(events.slice(4000))
    assert digest.refresh() == 1
    after = {p.path.name: p.path.stat().st_mtime_ns for p in digest.parts}
    assert set(before) < set(after) and all(after[name] == before[name] for name in before)
    assert digest.refresh() == 0
    check_agrees(digest, store.scan())
    # a new reader over the same home finds the parts on disk and digests nothing again
    again = EventDigest(tmp_path)
    assert again.refresh() == 0 and again.hourly().events == events.num_rows


def test_compaction_across_parts_is_digested_again_and_still_agrees(tmp_path, events):
    store = fill(tmp_path, events, parts=4)
    digest = EventDigest(tmp_path)
    digest.refresh()
    assert len(digest.parts) == 1  # four small segments: one part
    store.append(generate_events(users=5, items=5, events=50, days=10, seed=3))
    digest.refresh()
    assert len(digest.parts) == 2
    result = store.compact(target_rows=100_000)  # everything into one segment
    assert result.after == 1
    assert digest.refresh() == 1
    assert len(digest.parts) == 1
    check_agrees(digest, store.scan())


def test_many_small_segments_end_up_in_few_parts(tmp_path, events, monkeypatch):
    monkeypatch.setattr(digest_module, "SMALL_ROWS", 2000)
    monkeypatch.setattr(digest_module, "MAX_SMALL_PARTS", 2)
    store = EventStore(tmp_path)
    digest = EventDigest(tmp_path)
    for chunk in np.array_split(np.arange(events.num_rows), 12):  # 500 rows per commit
        store.append(events.take(pa.array(chunk)))
        digest.refresh()
        assert sum(p.rows < 2000 for p in digest.parts) <= 2
    assert len(digest.parts) <= 5
    check_agrees(digest, store.scan())
    on_disk = sorted(p.name for p in digest.root.iterdir() if p.name.startswith("part-"))
    assert on_disk == sorted(p.path.name for p in digest.parts)  # merged parts were deleted


def test_a_failed_refresh_leaves_no_half_part_and_the_next_one_recovers(tmp_path, events, monkeypatch):
    store = fill(tmp_path, events, parts=2)
    digest = EventDigest(tmp_path)
    real = digest_module.pq.write_table

    def failing(table, where, **kwargs):
        if str(where).endswith("users.parquet"):
            raise OSError("disk full")
        return real(table, where, **kwargs)

    monkeypatch.setattr(digest_module.pq, "write_table", failing)
    assert digest.refresh() == 0
    assert "disk full" in (digest.error or "")
    assert [p.name for p in digest.root.iterdir()] == ["refresh.lock"] and digest.parts == []
    monkeypatch.setattr(digest_module.pq, "write_table", real)
    assert digest.refresh() == 2 and digest.error is None
    check_agrees(digest, store.scan())
