"""The quarantine: rejected rows, one JSON line each, under ``<home>/quarantine/``.

One file per ingestion of a source, named after it and the time it started:
``<home>/quarantine/<source name>.<YYYYmmddTHHMMSSZ>.jsonl`` (``ratings.csv.20240501T120000Z.jsonl``,
``http.20240501T120000Z.jsonl``). Each line is ``{"source", <location keys>, "reason", "raw"}``,
e.g. ``{"source": "/data/ratings.csv", "line": 12, "reason": "missing user_id", "raw": ",i9,..."}``.
The file is created on the first rejection only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from recforge.data.validation import Rejection

__all__ = ["CHUNK_CHARS", "Quarantine"]

#: rejections are written in chunks of whole lines of about this many characters
CHUNK_CHARS = 1 << 20


class Quarantine:
    """Appends rejections of one source to its quarantine file.

    Lines reach the file whole: they are written in chunks of whole lines, one ``write`` system
    call each on a file opened for appending, so a process killed at any moment (SIGKILL: a
    Kafka consumer mid-batch) leaves no cut line for a reader, or for the next writer that
    appends to the same file, to trip on. ``flush`` makes them durable."""

    def __init__(self, home: str | Path, source_name: str, *, started: datetime | None = None) -> None:
        started = started or datetime.now(UTC)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", source_name).strip("._") or "source"
        self.path = Path(home) / "quarantine" / f"{safe}.{started:%Y%m%dT%H%M%SZ}.jsonl"
        self.count = 0
        self._fd: int | None = None

    def write(self, rejections: Iterable[Rejection]) -> None:
        chunk: list[str] = []
        size = 0
        for rejection in rejections:
            line = rejection.to_json() + "\n"
            chunk.append(line)
            size += len(line)
            self.count += 1
            if size >= CHUNK_CHARS:
                self._append("".join(chunk))
                chunk, size = [], 0
        if chunk:
            self._append("".join(chunk))

    def _append(self, text: str) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        view = memoryview(text.encode("utf-8"))
        while view:  # (a regular file takes it in one call, short only when the disk fills)
            view = view[os.write(self._fd, view) :]

    def flush(self) -> None:
        """Make the rejections written so far durable (fsync'd): done before a source's read
        position is committed past them (Kafka offsets)."""
        if self._fd is not None:
            os.fsync(self._fd)

    @property
    def written(self) -> Path | None:
        """The file, when anything was written to it."""
        return self.path if self.count else None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Quarantine:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
