"""Catalog changes from Kafka: an items topic upserted into the catalog store, exactly once.

Each message is one item record, as over HTTP (``{"item_id", "categories", "available",
"created_at", "attributes"}``, any subset but ``item_id``; other keys are an error): it changes
only the fields it has (``{"item_id": "i1", "available": false}`` sells an item out). Bad
messages go to the quarantine with their partition and offset.

**Exactly once.** A batch's items and the next offset of each of its partitions are written in
one transaction (:class:`~recforge.catalog.store.KafkaPositions`), and the consumer starts each
partition it is given from the stored offset (:meth:`ItemSink.positions`), whatever the group's
committed offset says. A consumer killed at any point leaves either the whole batch applied
and its offsets stored, or neither: a batch is never applied twice (an older message never
undoes a newer change), nor lost. The group's committed offsets are still updated after each
batch, for lag monitoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson

from recforge.catalog.record import ItemPatch, validate_record
from recforge.catalog.store import CatalogStore, KafkaPositions
from recforge.config import Config
from recforge.data.kafka import KafkaSink, SinkResult
from recforge.data.quarantine import Quarantine
from recforge.data.validation import Rejection

__all__ = ["ItemSink"]


class ItemSink(KafkaSink):
    """Item records into the catalog store, offsets kept with them (see the module doc)."""

    def __init__(self, store: CatalogStore, topic: str) -> None:
        self.store = store
        self.topic = topic
        self.home = Path(store.home)

    def positions(self, topic: str) -> dict[int, int]:
        return self.store.offsets(topic)

    def write(
        self,
        values: Sequence[bytes | None],
        partitions: np.ndarray,
        offsets: np.ndarray,
        quarantine: Quarantine,
        source: str,
        config: Config,
    ) -> SinkResult:
        patches: list[ItemPatch] = []
        where: list[int] = []
        rejections: list[Rejection] = []
        for j, value in enumerate(values):
            location = {"partition": int(partitions[j]), "offset": int(offsets[j])}
            try:
                record = orjson.loads(value or b"")
            except orjson.JSONDecodeError as error:
                text = None if value is None else value.decode("utf-8", errors="replace")
                rejections.append(Rejection(source, location, f"invalid JSON: {error}", text))
                continue
            checked = validate_record(record, max_id_length=config.data.max_id_length)
            if isinstance(checked, ItemPatch):
                patches.append(checked)
                where.append(j)
            else:
                rejections.append(Rejection(source, location, "; ".join(checked), record))
        quarantine.write(rejections)
        quarantine.flush()
        ends = {int(p): int(offsets[partitions == p].max()) + 1 for p in np.unique(partitions)}
        picked = np.asarray(where, dtype=np.int64)
        positions = KafkaPositions(self.topic, partitions[picked].tolist(), offsets[picked].tolist(), ends)
        result = self.store.upsert(patches, offsets=positions)
        return SinkResult(result.items, result.skipped, len(rejections))
