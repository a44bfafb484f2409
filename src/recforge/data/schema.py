"""The event schema: one contract for every source, the store and the build.

=============  =========================  =================================================
column         Arrow type                 meaning
=============  =========================  =================================================
event_id       large_string (nullable)    the dedupe key; when a source has none, the store
                                          derives one from the row's content, so an exact
                                          repeat of an event (a re-ingested file) is one event
user_id        large_string               external user id, 1..256 characters
item_id        large_string               external item id, 1..256 characters
event_type     large_string               view, like, cart, purchase, rating (configurable)
value          float64                    default 1.0; the rating for explicit data
timestamp      timestamp[us, tz=UTC]      when it happened
=============  =========================  =================================================
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

__all__ = [
    "COLUMNS",
    "DEFAULT_EVENT_TYPES",
    "EVENT_SCHEMA",
    "FIXED_TIMESTAMP",
    "MAX_ID_LENGTH",
]

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.large_string(), nullable=True),
        pa.field("user_id", pa.large_string(), nullable=False),
        pa.field("item_id", pa.large_string(), nullable=False),
        pa.field("event_type", pa.large_string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA.names)

DEFAULT_EVENT_TYPES: tuple[str, ...] = ("view", "like", "cart", "purchase", "rating")

MAX_ID_LENGTH = 256

#: The timestamp given to events from sources that carry none (the ml-1m-pairs Parquet file):
#: 2000-01-01T00:00:00Z. All such events then have the same age, so time decay leaves their
#: relative weights unchanged; temporal splits cannot be made on them.
FIXED_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
