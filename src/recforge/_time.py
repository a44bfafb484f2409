"""Time at recforge's edges: ISO 8601 text in, UTC ``datetime`` out, and back."""

from __future__ import annotations

from datetime import UTC, datetime

from recforge.errors import RecforgeError

__all__ = ["iso", "iso_from_us", "parse_time", "to_us"]


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time (UTC when it has no zone); a clear error otherwise."""
    try:
        when = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise RecforgeError(f"{text!r} is not an ISO 8601 date or time (e.g. 2024-05-01T00:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def iso(when: datetime | None) -> str | None:
    """``when`` as ISO 8601 UTC with a ``Z`` (a naive ``datetime`` is taken as UTC); ``None`` stays."""
    if when is None:
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_us(when: datetime) -> int:
    """Microseconds since the epoch; a naive ``datetime`` is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1e6)


def iso_from_us(us: int) -> str:
    """ISO 8601 UTC (``...Z``) of microseconds since the epoch."""
    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat().replace("+00:00", "Z")
