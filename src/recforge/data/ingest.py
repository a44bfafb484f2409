"""Ingestion: read a source, validate it, quarantine the bad rows, store the good ones.

Each file becomes at most one new segment, committed when the whole file has been read: an
ingestion that fails or is killed half-way stores nothing, and running it again is idempotent
(duplicates are dropped by event id). Under ``strict``, one bad row fails the whole file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recforge._progress import progress
from recforge.config import Config
from recforge.data.quarantine import Quarantine
from recforge.data.readers import Source
from recforge.data.store import EventStore
from recforge.data.validation import Rejection, validate_table
from recforge.errors import RecforgeError

__all__ = ["IngestReport", "ingest_file"]


@dataclass(frozen=True)
class IngestReport:
    """What one ingestion did."""

    source: str
    format: str
    rows: int
    accepted: int
    rejected: int
    duplicates: int
    quarantine: Path | None
    segment: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "quarantine": str(self.quarantine) if self.quarantine else None,
            "segment": str(self.segment) if self.segment else None,
        }


def ingest_file(
    path: str | Path,
    store: EventStore,
    config: Config,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | None = None,
    constants: Mapping[str, Any] | None = None,
    strict: bool = False,
    show_progress: bool | None = None,
) -> IngestReport:
    """Ingest one file (see :mod:`recforge.data.readers` for formats, ``mapping`` and
    ``constants``).

    Raises :class:`~recforge.errors.UnreadableSourceError` when the file cannot be read at all,
    and :class:`~recforge.errors.RecforgeError` under ``strict`` when any row is bad (the bad
    rows are still written to the quarantine; nothing is stored).
    """
    source = Source(path, format, mapping, constants)
    rows = 0
    first_bad: Rejection | None = None
    with (
        Quarantine(store.home, source.name) as quarantine,
        store.writer() as writer,
        progress(f"ingest {source.name}", None, enabled=show_progress) as bar,
    ):
        for chunk in source.chunks(config.data.chunk_rows):
            good, rejections = validate_table(
                chunk.table,
                config.data,
                source=str(source.path),
                locations=chunk.locations,
                raw=chunk.raw,
                extra=chunk.extra,
                malformed=chunk.malformed,
            )
            rows += chunk.table.num_rows
            quarantine.write(rejections)
            first_bad = first_bad or (rejections[0] if rejections else None)
            if not (strict and first_bad):
                writer.write(good)
            bar.advance(chunk.table.num_rows)
        if strict and first_bad is not None:
            writer.abort()
            where = ", ".join(f"{k} {v}" for k, v in first_bad.location.items())
            raise RecforgeError(
                f"{source.path}: {quarantine.count} bad rows (first at {where}: {first_bad.reason}); "
                f"nothing stored (--strict); all listed in {quarantine.path}"
            )
        result = writer.commit()
    return IngestReport(
        str(source.path),
        source.format.name,
        rows,
        result.accepted,
        quarantine.count,
        result.duplicates,
        quarantine.written,
        result.segment,
    )
