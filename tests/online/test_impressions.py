"""The impression store: batched durable writes, crash recovery, sealing, reading by time."""

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
    ImpressionLog,
    ImpressionStore,
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


def test_records_are_durable_after_a_flush_and_sealed_on_stop(tmp_path):
    store = ImpressionStore(tmp_path)
    written = []
    log = ImpressionLog(store, flush_ms=50, on_write=written.append)
    log.start()
    rows = [impression(n) for n in range(500)]
    for row in rows:
        log.record(row)
    deadline = time.monotonic() + 10
    while store.scan().num_rows < 500 and time.monotonic() < deadline:
        time.sleep(0.02)
    table = store.scan()
    assert table.schema == IMPRESSION_SCHEMA
    assert table.column("recommendation_id").to_pylist() == [r.recommendation_id for r in rows]
    assert table.column("items").to_pylist()[3] == ["i3", "i0"]
    assert sum(len(batch) for batch in written) == 500
    assert [p.suffix for p in store.parts().values()] == [".arrows"]
    log.stop()
    assert [p.suffix for p in store.parts().values()] == [".parquet"]
    assert store.scan().equals(table)


def test_a_killed_writer_loses_only_what_it_had_not_flushed(tmp_path):
    """A crash mid-append leaves a cut batch at the end of the log: readers skip it, and the
    next writer to start seals the rest."""
    store = ImpressionStore(tmp_path)
    log = ImpressionLog(store, flush_ms=10_000)  # flushed by hand below
    log.start()
    for n in range(30):
        log.record(impression(n))
    assert log.flush() == 30
    log.record(impression(99))  # queued, never flushed: lost with the process
    path = next(iter(store.parts().values()))
    with path.open("ab") as handle:  # half a batch, as a kill during write() leaves it
        handle.write(b"\xff\xff\xff\xff\x48\x01\x00\x00" + b"\x00" * 40)
    log._stop.set()  # the "kill": the thread ends and the file closes without sealing
    log._thread.join()
    log._thread = None
    log._file.close()
    assert store.scan().num_rows == 30
    assert store.recover() == 1
    assert [p.suffix for p in store.parts().values()] == [".parquet"]
    assert store.scan().num_rows == 30


def test_a_live_writers_log_is_not_recovered_and_a_half_sealed_one_reads_once(tmp_path):
    store = ImpressionStore(tmp_path)
    log = ImpressionLog(store, flush_ms=10_000)
    log.start()
    log.record(impression(1))
    log.flush()
    assert store.recover() == 0  # its lock is held
    token = next(iter(store.parts()))
    import pyarrow.parquet as pq

    pq.write_table(store.scan(), store.root / f"part-{token}.parquet")  # a seal killed before its unlink
    assert store.scan().num_rows == 1
    log.stop()
    assert store.scan().num_rows == 1 and len(list(store.root.iterdir())) == 1


def test_failed_writes_keep_the_rows_and_retry(tmp_path, monkeypatch):
    store = ImpressionStore(tmp_path)
    log = ImpressionLog(store, flush_ms=10_000)
    log.start()
    log.record(impression(1))
    real = ImpressionLog._append

    def broken(self, table):
        raise OSError("disk full")

    monkeypatch.setattr(ImpressionLog, "_append", broken)
    assert log.flush() == 0
    log.record(impression(2))
    monkeypatch.setattr(ImpressionLog, "_append", real)
    assert log.flush() == 2
    log.stop()
    assert store.scan().num_rows == 2


def test_pending_impressions_are_bounded_when_the_disk_refuses(tmp_path, monkeypatch):
    monkeypatch.setattr(module, "MAX_PENDING", 5)
    log = ImpressionLog(ImpressionStore(tmp_path), flush_ms=10_000)
    monkeypatch.setattr(ImpressionLog, "_append", lambda self, table: (_ for _ in ()).throw(OSError("no")))
    for n in range(8):
        log.record(impression(n))
    log.flush()
    assert len(log._pending) == 5 and log.dropped == 3


def test_scan_by_time(tmp_path):
    store = ImpressionStore(tmp_path)
    log = ImpressionLog(store, flush_ms=10_000)
    log.start()
    for day in range(1, 6):
        log.record(impression(day, at_us=int(datetime(2024, 1, day, tzinfo=UTC).timestamp() * 1e6)))
    start, end = datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC)
    log.flush()
    assert [d.day for d in store.scan(start, end).column("timestamp").to_pylist()] == [2, 3]  # the log
    log.stop()
    assert [d.day for d in store.scan(start, end).column("timestamp").to_pylist()] == [2, 3]  # sealed
    assert [d.day for d in store.scan(start=end).column("timestamp").to_pylist()] == [4, 5]
    assert store.scan().num_rows == 5 and ImpressionStore(tmp_path / "none").scan().num_rows == 0


def test_batches_are_written_every_flush_and_fsynced_every_sync_ms(tmp_path, monkeypatch):
    """A written batch is readable at once (a killed server loses nothing written); the log is
    fsync'd only every ``sync_ms``, not at every batch."""
    synced: list[int] = []
    monkeypatch.setattr(module.os, "fsync", synced.append)
    store = ImpressionStore(tmp_path)
    log = ImpressionLog(store, flush_ms=20, sync_ms=300)
    store.root.mkdir()
    log.record(impression(0))
    log.flush()  # creates the log: its header and directory entry are fsync'd at once
    opened = len(synced)
    log.start()
    for n in range(1, 10):
        log.record(impression(n))
        time.sleep(0.02)
    deadline = time.monotonic() + 10
    while store.scan().num_rows < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.scan().num_rows == 10
    assert len(synced) <= opened + 1  # ~10 batches in ~0.2 s, at most one sync after them
    deadline = time.monotonic() + 10
    while len(synced) < opened + 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(synced) == opened + 1  # within sync_ms of the last batch, then no more
    time.sleep(0.4)
    assert len(synced) == opened + 1
    log.stop()


def test_a_failed_fsync_is_tried_again(tmp_path, monkeypatch):
    store = ImpressionStore(tmp_path)
    log = ImpressionLog(store, flush_ms=10_000, sync_ms=10_000)  # flushed and synced by hand
    log.start()
    log.record(impression(0))
    log.flush()
    failures = iter([OSError("EIO")])

    def fsync(fd: int) -> None:
        error = next(failures, None)
        if error is not None:
            raise error

    monkeypatch.setattr(module.os, "fsync", fsync)
    log.sync()
    assert log._unsynced  # still owed
    log.sync()
    assert not log._unsynced
    log.stop()


def test_bad_flush_and_sync_intervals():
    with pytest.raises(ValueError, match="flush_ms"):
        ImpressionLog(ImpressionStore("x"), flush_ms=0)
    with pytest.raises(ValueError, match="sync_ms"):
        ImpressionLog(ImpressionStore("x"), flush_ms=10, sync_ms=0)


def test_to_table_of_nothing():
    assert to_table([]).schema == IMPRESSION_SCHEMA
    assert to_table([impression(1, user=None)]).column("user_id").null_count == 1
    assert isinstance(to_table([impression(1)]), pa.Table)
