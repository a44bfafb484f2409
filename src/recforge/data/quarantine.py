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
from typing import IO

from recforge.data.validation import Rejection

__all__ = ["Quarantine"]


class Quarantine:
    """Appends rejections of one source to its quarantine file."""

    def __init__(self, home: str | Path, source_name: str, *, started: datetime | None = None) -> None:
        started = started or datetime.now(UTC)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", source_name).strip("._") or "source"
        self.path = Path(home) / "quarantine" / f"{safe}.{started:%Y%m%dT%H%M%SZ}.jsonl"
        self.count = 0
        self._handle: IO[str] | None = None

    def write(self, rejections: Iterable[Rejection]) -> None:
        for rejection in rejections:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a", encoding="utf-8")
            self._handle.write(rejection.to_json() + "\n")
            self.count += 1

    def flush(self) -> None:
        """Make the rejections written so far durable (flushed and fsync'd): done before a
        source's read position is committed past them (Kafka offsets)."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    @property
    def written(self) -> Path | None:
        """The file, when anything was written to it."""
        return self.path if self.count else None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Quarantine:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
