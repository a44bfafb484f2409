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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.errors import RecforgeError

__all__ = [
    "COLUMNS",
    "DEFAULT_EVENT_TYPES",
    "EVENT_SCHEMA",
    "FIXED_TIMESTAMP",
    "MAX_ID_LENGTH",
    "iso_from_us",
    "parse_time",
    "timestamps_us",
    "to_us",
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


def timestamps_us(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A timestamp column as int64 microseconds since the epoch (numbers are read as seconds)."""
    if pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.timestamp("us", tz="UTC")) if column.type.unit != "us" else column
        return np.asarray(column.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    return (np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64) * 1e6).astype(np.int64)


def to_us(when: datetime) -> int:
    """Microseconds since the epoch; a naive ``datetime`` is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1e6)


def iso_from_us(us: int) -> str:
    """ISO 8601 UTC (``...Z``) of microseconds since the epoch."""
    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time (UTC when it has no zone); a clear error otherwise."""
    try:
        when = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise RecforgeError(f"{text!r} is not an ISO 8601 date or time (e.g. 2024-05-01T00:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
