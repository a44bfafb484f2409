"""``recforge items ingest``: read an item file, validate it, quarantine the bad rows, upsert the good.

As for events (:mod:`recforge.data.ingest`): bad rows go to ``<home>/quarantine/<file>.<time>.jsonl``
with their line (or row) number and reason, the good ones are stored; under ``strict`` one bad
row stores nothing. A file is upserted as one transaction (:class:`~recforge.catalog.store.CatalogStore`),
so an ingestion that fails or is killed half-way changes nothing, and running it again gives
the same catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recforge.catalog.items import validate_chunk
from recforge.catalog.readers import ItemSource
from recforge.catalog.record import ItemPatch
from recforge.catalog.store import CatalogStore
from recforge.config import Config
from recforge.data.quarantine import Quarantine
from recforge.data.validation import Rejection
from recforge.errors import RecforgeError

__all__ = ["ItemsReport", "ingest_items"]


@dataclass(frozen=True)
class ItemsReport:
    """What one item ingestion did."""

    source: str
    format: str
    rows: int
    upserted: int
    new: int
    rejected: int
    quarantine: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "rows": self.rows,
            "upserted": self.upserted,
            "new": self.new,
            "rejected": self.rejected,
            "quarantine": str(self.quarantine) if self.quarantine else None,
        }


def ingest_items(
    path: str | Path,
    store: CatalogStore,
    config: Config,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | None = None,
    strict: bool = False,
) -> ItemsReport:
    """Ingest one item file into ``store`` (see the module doc)."""
    source = ItemSource(path, format, mapping)
    patches: list[ItemPatch] = []
    rows = 0
    first_bad: Rejection | None = None
    with Quarantine(store.home, source.name) as quarantine:
        for chunk in source.chunks(config.data.chunk_rows):
            good, bad = validate_chunk(chunk, str(source.path), config.data.max_id_length)
            rows += len(chunk.records)
            quarantine.write(bad)
            first_bad = first_bad or (bad[0] if bad else None)
            patches += good
        if strict and first_bad is not None:
            where = ", ".join(f"{k} {v}" for k, v in first_bad.location.items())
            raise RecforgeError(
                f"{source.path}: {quarantine.count} bad items (first at {where}: {first_bad.reason}); "
                f"nothing stored (--strict); all listed in {quarantine.path}"
            )
        result = store.upsert(patches)
    return ItemsReport(
        str(source.path), source.format, rows, result.items, result.new, quarantine.count, quarantine.written
    )
