"""The event schema: one contract for every source, the store and the build.

=================  =========================  ==============================================
column             Arrow type                 meaning
=================  =========================  ==============================================
event_id           large_string (nullable)    the dedupe key; when a source has none, the
                                              store derives one from the row's content, so an
                                              exact repeat of an event (a re-ingested file)
                                              is one event
user_id            large_string               external user id, 1..256 characters
item_id            large_string               external item id, 1..256 characters
event_type         large_string               view, like, cart, purchase, rating
                                              (configurable)
value              float64                    default 1.0; the rating for explicit data
timestamp          timestamp[us, tz=UTC]      when it happened
recommendation_id  large_string (nullable)    the served answer the event followed, when the
                                              client says so; null otherwise, and in segments
                                              written before the column existed
=================  =========================  ==============================================

``recommendation_id`` is not content: it takes no part in the id derived for an event without
one (:mod:`recforge.data.keys`), and builds and splits never read it (:data:`CONTENT_COLUMNS`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "COLUMNS",
    "CONTENT_COLUMNS",
    "DEFAULT_EVENT_TYPES",
    "EVENT_SCHEMA",
    "FIXED_TIMESTAMP",
    "MAX_ID_LENGTH",
    "timestamps_us",
]

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.large_string(), nullable=True),
        pa.field("user_id", pa.large_string(), nullable=False),
        pa.field("item_id", pa.large_string(), nullable=False),
        pa.field("event_type", pa.large_string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("recommendation_id", pa.large_string(), nullable=True),
    ]
)

COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA.names)

#: What an event says, and what builds and splits read: every column but the dedupe key and the
#: recommendation it followed.
CONTENT_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "event_type", "value", "timestamp")

DEFAULT_EVENT_TYPES: tuple[str, ...] = ("view", "like", "cart", "purchase", "rating")

MAX_ID_LENGTH = 256

#: The timestamp given to events from sources that carry none (the ml-1m-pairs Parquet file):
#: 2000-01-01T00:00:00Z. All such events then have the same age, so time decay leaves their
#: relative weights unchanged; temporal splits cannot be made on them.
FIXED_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)


def timestamps_us(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A timestamp column as int64 microseconds since the epoch (numbers are read as seconds)."""
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.timestamp("us", tz="UTC")) if column.type.unit != "us" else column
        return np.asarray(column.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    return (np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64) * 1e6).astype(np.int64)
