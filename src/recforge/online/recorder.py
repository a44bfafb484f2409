"""A server's impressions: a queue on the request path, a writer process off it.

Recording an answer is one ``deque.append``. Every ``flush_ms / 2`` a thread of the server takes
what is queued and sends it through a pipe to a writer process (``python -m
recforge.online.recorder HOME FLUSH_MS SYNC_MS``), which appends it to its log
(:class:`~recforge.online.impressions.ImpressionWriter`) and answers with the rows it wrote and
dropped; the thread then counts the written ones (``on_write``). Turning ~50 rows into Arrow
and writing them held the server's GIL for ~0.6 ms a batch (~20 us of CPU per request at 500
requests a second), long enough to hold up the requests that arrived meanwhile (p99 13-20 %
above impressions off, issue 18). Handing the batch over (``marshal``, two pipe system calls,
the count) costs the server's thread ~7 us per request at that rate.

**Wire format.** Server to writer: a batch is a 4-byte little-endian length, then the
``marshal`` of a list of tuples in :class:`~recforge.online.impressions.Impression`'s field
order. Writer to server: after each batch, 16 bytes, ``(written, dropped)`` as two
little-endian unsigned 64-bit integers, counting all rows written or dropped since its last
answer (a failed write keeps rows, up to ``MAX_PENDING``, and writes them later, oldest first).

**Losing nothing more than before.** The thread waits for each batch's answer before it sends
the next, so nothing waits in the pipe: a server killed together with its writer loses at most
its last ``flush_ms`` of impressions, as a writer in the server would. A server killed alone
loses only what it had queued: the writer reads to the end of the pipe, seals its log and
exits. The writer ignores SIGINT and SIGTERM, which a terminal's Ctrl-C or a service manager's
stop send to the whole process group, so the server's last batch, sent as it shuts down, still
finds it. A writer that dies is started again a second later, and the rows it had not
reported written are sent again: at least once (a writer killed between writing a batch and
answering leaves that batch twice in the store).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import marshal
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from recforge._source import child_pythonpath
from recforge.online.impressions import (
    MAX_PENDING,
    Impression,
    ImpressionStore,
    ImpressionWriter,
    check_intervals,
)

__all__ = ["ImpressionLog", "main"]

log = logging.getLogger("recforge.online")

#: After a writer fails, the next is started no sooner than this (a writer that cannot start
#: must not be forked ten times a second); the rows wait in the queue meanwhile.
RESTART_SECONDS = 1.0

_LENGTH = struct.Struct("<I")
_ANSWER = struct.Struct("<QQ")


class ImpressionLog:
    """A server's recorder of impressions (see the module docstring). ``record`` is safe from
    any thread and never blocks; ``start`` begins the thread (the writer process starts with the
    first batch), ``stop`` sends what is queued and waits for the writer to seal its log and
    exit. ``on_write(rows)`` is called with the rows the writer reports written."""

    def __init__(
        self,
        store: ImpressionStore,
        flush_ms: int,
        on_write: Callable[[list[Impression]], None] | None = None,
        sync_ms: int = 1000,
    ) -> None:
        check_intervals(flush_ms, sync_ms)
        self.store = store
        self.flush_ms = flush_ms
        self.sync_ms = sync_ms
        self.on_write = on_write
        self.dropped = 0
        self._pending: collections.deque[Impression] = collections.deque()
        self._sent: collections.deque[Impression] = collections.deque()  # not yet reported written
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._writer: subprocess.Popen[bytes] | None = None
        self._failing = False
        self._restart_at = 0.0  # a failed writer is not started again before this

    def record(self, impression: Impression) -> None:
        """Queue one impression for the next batch (the request path: one append)."""
        self._pending.append(impression)

    def start(self) -> None:
        """Seal the logs of writers that stopped without sealing (a killed server's), then
        start the thread."""
        if self._thread is not None:
            return
        try:
            recovered = self.store.recover()
        except OSError as error:
            log.error("could not seal the impression logs of stopped writers: %s", error)
        else:
            if recovered:
                log.info("sealed %d impression logs left by stopped writers", recovered)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="recforge-impressions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Send what is queued, let the writer seal its log and exit, stop the thread."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=60)
        self._thread = None
        self._restart_at = 0.0  # a writer that failed a moment ago gets its last chance now
        self.flush()
        with self._lock:
            self._end_writer()
            lost = len(self._pending) + len(self._sent)
        if lost:
            log.error("%d impressions could not be handed to a writer and are lost", lost)
            self.dropped += lost

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid (``None`` before the first batch)."""
        return None if self._writer is None else self._writer.pid

    def _run(self) -> None:
        while not self._stop.wait(self.flush_ms / 2000):
            self.flush()

    def flush(self) -> int:
        """Send what is queued to the writer and wait for its answer; returns the rows it
        reports written (with any it had kept from a failed write)."""
        with self._lock:
            count = len(self._pending)
            if (not count and not self._sent) or time.monotonic() < self._restart_at:
                return 0
            rows = [self._pending.popleft() for _ in range(count)]
            self._sent.extend(rows)
            try:
                written, dropped = self._exchange(rows)
            except (OSError, EOFError, ValueError) as error:
                self._writer_failed(error)
                return 0
            if self._failing:
                log.info("the impression writer answers again")
                self._failing = False
            for _ in range(dropped):
                self._sent.popleft()
            self.dropped += dropped
            done = [self._sent.popleft() for _ in range(written)]
        if done and self.on_write is not None:
            try:
                self.on_write(done)
            except Exception:  # counting must never stop the writer
                log.exception("impression callback failed")
        return written

    def _exchange(self, rows: Sequence[Impression]) -> tuple[int, int]:
        writer = self._start_writer()
        assert writer.stdin is not None and writer.stdout is not None
        payload = marshal.dumps([tuple(row) for row in rows])
        _write_all(writer.stdin.fileno(), _LENGTH.pack(len(payload)) + payload)
        written, dropped = _ANSWER.unpack(_read_exactly(writer.stdout.fileno(), _ANSWER.size))
        if written + dropped > len(self._sent):
            raise ValueError(f"the writer answered {written} + {dropped} rows of {len(self._sent)} sent")
        return written, dropped

    def _start_writer(self) -> subprocess.Popen[bytes]:
        if self._writer is None:
            environ = dict(os.environ, PYTHONPATH=child_pythonpath())  # this recforge, not another
            command = [sys.executable, "-m", "recforge.online.recorder", str(self.store.root.parent)]
            self._writer = subprocess.Popen(
                [*command, str(self.flush_ms), str(self.sync_ms)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=environ,
            )
        return self._writer

    def _writer_failed(self, error: BaseException) -> None:
        """The writer died, garbled its answer or could not start: what it had not reported
        written goes back to the queue, and the first batch ``RESTART_SECONDS`` later starts a
        new writer."""
        if not self._failing:
            log.error("the impression writer failed (started again in %.0f s): %r", RESTART_SECONDS, error)
        self._failing = True
        self._restart_at = time.monotonic() + RESTART_SECONDS
        self._pending.extendleft(reversed(self._sent))
        self._sent.clear()
        excess = len(self._pending) - MAX_PENDING
        for _ in range(max(excess, 0)):
            self._pending.popleft()
            self.dropped += 1
        if self._writer is not None:
            self._writer.kill()
            self._end_writer()

    def _end_writer(self) -> None:
        """Close the pipe (the writer then seals its log and exits) and reap the writer."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        assert writer.stdin is not None and writer.stdout is not None
        with contextlib.suppress(OSError):  # a dead writer's pipe
            writer.stdin.close()
        try:
            writer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            log.error("the impression writer did not exit within 60 s; killed (its log is sealed later)")
            writer.kill()
            writer.wait()
        writer.stdout.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, size: int) -> bytes:
    """``size`` bytes from ``fd``; ``EOFError`` when it ends first."""
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError("the impression writer closed its pipe")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def serve(writer: ImpressionWriter, source: int, answer: int) -> None:
    """The writer process's loop: write each batch read from ``source`` and answer on
    ``answer``; between batches, what the writer has due; at the end of ``source``, close it."""
    try:
        while True:
            ready, _, _ = select.select([source], [], [], writer.due())
            if ready:
                try:
                    (length,) = _LENGTH.unpack(_read_exactly(source, _LENGTH.size))
                except EOFError:
                    return
                rows = marshal.loads(_read_exactly(source, length))
                writer.write(rows)
                _write_all(answer, _ANSWER.pack(*writer.take_counts()))
            writer.tick()
    finally:
        writer.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m recforge.online.recorder HOME FLUSH_MS SYNC_MS``: a server's writer process,
    reading batches on stdin and answering on stdout."""
    home, flush_ms, sync_ms = argv if argv is not None else sys.argv[1:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s (impression writer): %(message)s"
    )
    writer = ImpressionWriter(ImpressionStore(home), int(flush_ms), int(sync_ms))
    serve(writer, sys.stdin.fileno(), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
