"""The impression store and its writer: batched durable writes, crash recovery, sealing, reading
by time (in process; the server's writer process is tests/online/test_recorder.py)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from recforge.online import impressions as module
from recforge.online.impressions import (
    IMPRESSION_SCHEMA,
    Impression,
    ImpressionStore,
    ImpressionWriter,
    new_recommendation_id,
    to_table,
)


def impression(n: int, user: str | None = "u1", at_us: int | None = None) -> Impression:
    return Impression(
        new_recommendation_id(), user, None, "v1", "precomputed", None, None, [f"i{n}", "i0"],
        at_us if at_us is not None else time.time_ns() // 1000,
    )  # fmt: skip


def test_ids_are_unique_and_short():
    ids = {new_recommendation_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(len(i) < 32 for i in ids)


def test_ids_differ_in_a_forked_child():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave at once
        os.write(write, new_recommendation_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    mine = new_recommendation_id()
    assert child[:13] != mine[:13]  # another random prefix, so no shared counter clash


def test_batches_are_readable_at_once_and_sealed_on_close(tmp_path):
    store = ImpressionStore(tmp_path)
    writer = ImpressionWriter(store)
    rows = [impression(n) for n in range(500)]
    assert writer.write(rows[:200]) == 200 and writer.write([tuple(r) for r in rows[200:]]) == 300
    table = store.scan()
    assert table.schema == IMPRESSION_SCHEMA
    assert table.column("recommendation_id").to_pylist() == [r.recommendation_id for r in rows]
    assert table.column("items").to_pylist()[3] == ["i3", "i0"]
    assert writer.take_counts() == (500, 0) and writer.take_counts() == (0, 0)
    assert [p.suffix for p in store.parts().values()] == [".arrows"]
    writer.close()
    assert [p.suffix for p in store.parts().values()] == [".parquet"]
    assert store.scan().equals(table)


def test_a_killed_writer_loses_only_a_cut_batch(tmp_path):
    """A crash mid-append leaves a cut batch at the end of the log: readers skip it, and the
    next server to start recording seals the rest."""
    store = ImpressionStore(tmp_path)
    writer = ImpressionWriter(store)
    assert writer.write([impression(n) for n in range(30)]) == 30
    path = next(iter(store.parts().values()))
    with path.open("ab") as handle:  # half a batch, as a kill during write() leaves it
        handle.write(b"\xff\xff\xff\xff\x48\x01\x00\x00" + b"\x00" * 40)
    assert store.recover() == 0  # its lock is held
    writer._file.close()  # the "kill": the file closes without sealing
    assert store.scan().num_rows == 30
    assert store.recover() == 1
    assert [p.suffix for p in store.parts().values()] == [".parquet"]
    assert store.scan().num_rows == 30


def test_a_half_sealed_log_reads_once(tmp_path):
    store = ImpressionStore(tmp_path)
    writer = ImpressionWriter(store)
    writer.write([impression(1)])
    token = next(iter(store.parts()))
    import pyarrow.parquet as pq

    pq.write_table(store.scan(), store.root / f"part-{token}.parquet")  # a seal killed before its unlink
    assert store.scan().num_rows == 1
    writer.close()
    assert store.scan().num_rows == 1 and len(list(store.root.iterdir())) == 1


def test_failed_writes_keep_the_rows_and_retry_after_half_flush_ms(tmp_path, monkeypatch):
    store = ImpressionStore(tmp_path)
    writer = ImpressionWriter(store, flush_ms=100)
    real = ImpressionWriter._append

    def broken(self, table):
        raise OSError("disk full")

    monkeypatch.setattr(ImpressionWriter, "_append", broken)
    assert writer.write([impression(1)]) == 0
    assert 0.0 < writer.due() <= 0.05
    writer.tick()  # not due yet: no retry
    assert writer.write([impression(2)]) == 0
    monkeypatch.setattr(ImpressionWriter, "_append", real)
    time.sleep(writer.due())
    writer.tick()  # the retry
    assert writer.take_counts() == (2, 0)
    assert store.scan().num_rows == 2
    writer.close()
    assert store.scan().column("items").to_pylist() == [["i1", "i0"], ["i2", "i0"]]


def test_kept_impressions_are_bounded_when_the_disk_refuses(tmp_path, monkeypatch):
    monkeypatch.setattr(module, "MAX_PENDING", 5)
    writer = ImpressionWriter(ImpressionStore(tmp_path))
    monkeypatch.setattr(ImpressionWriter, "_append", lambda self, table: (_ for _ in ()).throw(OSError("no")))
    writer.write([impression(n) for n in range(8)])
    assert len(writer._pending) == 5 and writer.dropped == 3 and writer.take_counts() == (0, 3)
    assert [row.items[0] for row in writer._pending] == ["i3", "i4", "i5", "i6", "i7"]  # the oldest went


def test_scan_by_time(tmp_path):
    store = ImpressionStore(tmp_path)
    writer = ImpressionWriter(store)
    days = range(1, 6)
    writer.write([impression(d, at_us=int(datetime(2024, 1, d, tzinfo=UTC).timestamp() * 1e6)) for d in days])
    start, end = datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC)
    assert [d.day for d in store.scan(start, end).column("timestamp").to_pylist()] == [2, 3]  # the log
    writer.close()
    assert [d.day for d in store.scan(start, end).column("timestamp").to_pylist()] == [2, 3]  # sealed
    assert [d.day for d in store.scan(start=end).column("timestamp").to_pylist()] == [4, 5]
    assert store.scan().num_rows == 5 and ImpressionStore(tmp_path / "none").scan().num_rows == 0


def test_batches_are_fsynced_every_sync_ms_not_every_batch(tmp_path, monkeypatch):
    synced: list[int] = []
    monkeypatch.setattr(module.os, "fsync", synced.append)
    store = ImpressionStore(tmp_path)
    writer = ImpressionWriter(store, flush_ms=20, sync_ms=300)
    writer.write([impression(0)])  # creates the log: its header and directory entry are fsync'd at once
    opened = len(synced)
    for n in range(1, 10):
        writer.write([impression(n)])
        writer.tick()
        time.sleep(0.02)
    assert store.scan().num_rows == 10
    assert len(synced) <= opened + 1  # ~10 batches in ~0.2 s, at most one sync after them
    assert 0.0 <= writer.due() <= 0.3
    time.sleep(writer.due())
    writer.tick()
    assert len(synced) == opened + 1  # sync_ms after the first unsynced batch, then no more
    assert writer.due() > 1000  # nothing due but the seal, an hour after the log opened
    writer.close()


def test_a_failed_fsync_is_tried_again(tmp_path, monkeypatch):
    store = ImpressionStore(tmp_path)
    writer = ImpressionWriter(store, sync_ms=10_000)
    writer.write([impression(0)])
    failures = iter([OSError("EIO")])

    def fsync(fd: int) -> None:
        error = next(failures, None)
        if error is not None:
            raise error

    monkeypatch.setattr(module.os, "fsync", fsync)
    writer.sync()
    assert writer._unsynced  # still owed
    writer.sync()
    assert not writer._unsynced
    writer.close()


def test_bad_flush_and_sync_intervals():
    with pytest.raises(ValueError, match="flush_ms"):
        ImpressionWriter(ImpressionStore("x"), flush_ms=0)
    with pytest.raises(ValueError, match="sync_ms"):
        ImpressionWriter(ImpressionStore("x"), flush_ms=10, sync_ms=0)


def test_to_table_of_nothing():
    assert to_table([]).schema == IMPRESSION_SCHEMA
    assert to_table([impression(1, user=None)]).column("user_id").null_count == 1
    assert isinstance(to_table([impression(1)]), pa.Table)
