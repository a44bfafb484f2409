"""The quarantine file: whole lines only, whatever moment its writer is killed at."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from recforge.data import quarantine as quarantine_module
from recforge.data.quarantine import Quarantine
from recforge.data.validation import Rejection
from tests.conftest import REPO


def test_lines_are_appended_whole_and_flushed(tmp_path):
    with Quarantine(tmp_path, "kafka-events") as quarantine:
        assert quarantine.written is None
        quarantine.write(
            [Rejection("kafka:events", {"partition": 0, "offset": n}, "bad", "x" * n) for n in range(3)]
        )
        quarantine.flush()
        assert quarantine.count == 3 and quarantine.written == quarantine.path
    with Quarantine(tmp_path, "kafka-events", started=None) as again:  # another writer, same file or not
        again.write([Rejection("kafka:events", {"partition": 1, "offset": 9}, "worse", None)])
    paths = sorted((tmp_path / "quarantine").iterdir())
    lines = [json.loads(line) for path in paths for line in path.read_text().splitlines()]
    assert [(r["partition"], r["offset"], r["reason"]) for r in lines] == [
        (0, 0, "bad"), (0, 1, "bad"), (0, 2, "bad"), (1, 9, "worse")
    ]  # fmt: skip


def test_every_write_call_holds_whole_lines(tmp_path, monkeypatch):
    """What makes a kill harmless: each system call appends whole lines (here in chunks of about
    1,000 characters, so one batch takes many calls)."""
    monkeypatch.setattr(quarantine_module, "CHUNK_CHARS", 1000)
    calls: list[bytes] = []
    real = os.write

    def write(fd: int, data: bytes) -> int:
        calls.append(bytes(data))
        return real(fd, data)

    monkeypatch.setattr(quarantine_module.os, "write", write)
    with Quarantine(tmp_path, "big") as quarantine:
        quarantine.write(Rejection("f.csv", {"line": n}, "bad", "é\u2028\n" * (n % 50)) for n in range(2000))
    assert len(calls) > 100 and all(call.endswith(b"\n") for call in calls)
    lines = b"".join(calls).decode().splitlines()
    assert [json.loads(line)["line"] for line in lines] == list(range(2000))
    assert quarantine.path.read_bytes() == b"".join(calls)


def test_a_writer_killed_at_any_moment_leaves_no_cut_line(tmp_path):
    """Batches of rejections as a Kafka consumer writes them (each batch flushed), SIGKILLed at
    three moments: the file holds whole lines only (a buffered writer cuts a batch at its
    buffer's edge, and a writer killed before the batch's flush leaves half a line)."""
    script = textwrap.dedent(
        f"""
        import random
        from recforge.data.quarantine import Quarantine
        from recforge.data.validation import Rejection
        quarantine = Quarantine({str(tmp_path)!r}, "kafka-events")
        rng = random.Random(1)
        print("started", flush=True)
        n = 0
        while True:
            size = rng.randrange(1, 300)
            quarantine.write(
                Rejection("kafka:events", {{"partition": 0, "offset": n + j}}, "bad", "é" * rng.randrange(99))
                for j in range(size)
            )
            quarantine.flush()
            n += size
        """
    )
    for kill_after in (0.3, 0.55, 0.8):
        child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline() == "started\n"
        time.sleep(kill_after)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    offsets = []
    for path in (tmp_path / "quarantine").iterdir():
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n")
        offsets.extend(json.loads(line)["offset"] for line in text.splitlines())
    assert len(offsets) > 1000
