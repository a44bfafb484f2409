"""A server's recorder of impressions with its real writer process: batches through the pipe,
counts as written, a killed writer restarted without losing rows, a killed server's last
batches sealed by its writer, SIGTERM ignored until the server's last batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from recforge.online import recorder
from recforge.online.impressions import Impression, ImpressionStore, new_recommendation_id
from recforge.online.recorder import ImpressionLog
from tests.conftest import REPO


def impression(n: int) -> Impression:
    return Impression(
        new_recommendation_id(), f"u{n % 7}", None, "v1", "precomputed", None, None, [f"i{n}", "i0"],
        time.time_ns() // 1000,
    )  # fmt: skip


def exited(pid: int, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def test_batches_go_through_the_writer_process_and_are_counted_once_written(tmp_path):
    store = ImpressionStore(tmp_path)
    written: list[list[Impression]] = []
    log = ImpressionLog(store, flush_ms=50, on_write=written.append)
    log.start()
    assert log.writer_pid is None  # started with the first batch
    rows = [impression(n) for n in range(500)]
    for row in rows:
        log.record(row)
    deadline = time.monotonic() + 30
    while sum(map(len, written)) < 500 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [r.recommendation_id for batch in written for r in batch] == [r.recommendation_id for r in rows]
    pid = log.writer_pid
    assert pid is not None and pid != os.getpid()
    table = store.scan()  # each counted row is in the log already
    assert table.column("recommendation_id").to_pylist() == [r.recommendation_id for r in rows]
    assert table.column("items").to_pylist()[3] == ["i3", "i0"]
    assert [p.suffix for p in store.parts().values()] == [".arrows"]
    log.record(impression(500))
    log.stop()  # the last row sent, the log sealed, the writer gone
    assert exited(pid, 0.0) and log.writer_pid is None
    assert [p.suffix for p in store.parts().values()] == [".parquet"]
    assert store.scan().num_rows == 501


def test_a_flush_returns_when_the_rows_are_written(tmp_path):
    store = ImpressionStore(tmp_path)
    log = ImpressionLog(store, flush_ms=10_000)  # flushed by hand
    assert log.flush() == 0 and log.writer_pid is None  # nothing to send: no writer
    for n in range(30):
        log.record(impression(n))
    assert log.flush() == 30
    assert store.scan().num_rows == 30
    log.start()
    log.stop()
    assert store.scan().num_rows == 30


def test_a_killed_writer_is_started_again_and_its_rows_are_sent_again(tmp_path):
    store = ImpressionStore(tmp_path)
    written: list[list[Impression]] = []
    log = ImpressionLog(store, flush_ms=10_000, on_write=written.append)
    log.record(impression(0))
    assert log.flush() == 1
    first = log.writer_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # (a zombie until the recorder reaps it)
    for n in range(1, 4):
        log.record(impression(n))
    assert log.flush() == 0  # the dead writer's pipe: the rows go back to the queue
    assert log.writer_pid is None and len(log._pending) == 3
    assert log.flush() == 0 and log.writer_pid is None  # no new writer within RESTART_SECONDS
    time.sleep(recorder.RESTART_SECONDS)
    assert log.flush() == 3  # a new writer
    assert log.writer_pid not in (None, first)
    log.start()  # seals the dead writer's log
    assert [p.suffix for p in store.parts().values()] == [".parquet", ".arrows"]
    log.stop()
    assert sorted(r[0] for r in store.scan().column("items").to_pylist()) == ["i0", "i1", "i2", "i3"]
    assert sum(map(len, written)) == 4


def test_a_writer_that_cannot_start_keeps_the_rows_queued(tmp_path, monkeypatch):
    store = ImpressionStore(tmp_path)
    log = ImpressionLog(store, flush_ms=10_000)
    monkeypatch.setattr(recorder.sys, "executable", "/bin/false")  # starts, and exits at once
    for n in range(3):
        log.record(impression(n))
    assert log.flush() == 0 and len(log._pending) == 3 and log.dropped == 0
    monkeypatch.undo()
    log._restart_at = 0.0  # (rather than sleep RESTART_SECONDS)
    assert log.flush() == 3 and store.scan().num_rows == 3
    log.start()
    log.stop()


def test_the_writer_ignores_sigterm_and_waits_for_the_servers_last_batch(tmp_path):
    """A service manager's stop reaches the whole process group; the server's shutdown then
    sends its last batch, which the writer must still be there to write."""
    store = ImpressionStore(tmp_path)
    log = ImpressionLog(store, flush_ms=10_000)
    log.start()
    log.record(impression(0))
    log.flush()
    pid = log.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    assert not exited(pid, 0.5)
    log.record(impression(1))
    log.stop()
    assert exited(pid, 0.0) and store.scan().num_rows == 2
    assert [p.suffix for p in store.parts().values()] == [".parquet"]


@pytest.mark.slow
def test_a_server_killed_alone_loses_only_its_queue_and_its_writer_seals_the_log(tmp_path):
    """SIGKILL of the recording process only: its writer reads the pipe to its end, writes
    what was sent, seals the log and exits."""
    script = textwrap.dedent(
        f"""
        import os, signal, time
        from recforge.online.impressions import Impression, ImpressionStore
        from recforge.online.recorder import ImpressionLog
        log = ImpressionLog(ImpressionStore({str(tmp_path)!r}), flush_ms=10_000)
        for n in range(100):
            log.record(Impression(f"r{{n}}", "u", None, "v1", "precomputed", None, None, ["i"], 0))
        log.flush()
        log.record(Impression("queued", "u", None, "v1", "precomputed", None, None, ["i"], 0))
        print(log.writer_pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert int(out.stdout) > 0
    store = ImpressionStore(tmp_path)
    deadline = time.monotonic() + 30  # the orphaned writer is reaped by init, maybe not at once
    while [p.suffix for p in store.parts().values()] != [".parquet"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p.suffix for p in store.parts().values()] == [".parquet"]
    assert store.scan().column("recommendation_id").to_pylist() == [f"r{n}" for n in range(100)]


def test_the_writer_process_imports_neither_numba_nor_the_models():
    """Lazy names in ``recforge/__init__``: the writer starts in a fraction of a second."""
    code = (
        "import sys, recforge.online.recorder; "
        "print(sorted(m for m in sys.modules if m.startswith(('numba', 'recforge.models', 'scipy'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    import recforge

    assert {name: getattr(recforge, name) for name in recforge.__all__}  # every lazy name resolves
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        recforge.nothing
