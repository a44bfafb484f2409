"""Validation of raw events: good rows become an :data:`EVENT_SCHEMA` table, bad rows become
:class:`Rejection` records with where they came from and every reason they failed.

A row is rejected when (all reasons are reported, joined by ``"; "``):

* ``user_id`` or ``item_id`` is missing (null or empty), any id (``event_id`` and
  ``recommendation_id`` too, both optional) is longer than ``data.max_id_length`` characters,
  or an id or the event type holds a control character (Unicode category Cc: U+0000..U+001F,
  U+007F..U+009F; a NUL byte is one);
* ``event_type`` is missing, or unknown under ``data.unknown_event_type = "reject"``;
* ``value`` is not a number, is NaN or infinite, is larger in magnitude than ``data.max_value``
  (float32, which models train in, would turn sums of such values into infinity), or is negative
  for an event type not in ``data.allow_negative`` (a missing value is the default, 1.0);
* ``timestamp`` is missing, unparsable, or outside the accepted window: before
  ``data.min_timestamp``, or more than ``data.max_future_seconds`` after the time of validation
  (one event from the future would otherwise be the newest of every build). Accepted: Unix
  seconds (integer or fractional, as numbers or strings) and ISO 8601 (``2024-05-01``,
  ``2024-05-01T12:00:00``, ``...Z``, ``...+02:00``); a time without a zone is UTC.

Rows that could not even be split into fields (wrong column count, invalid JSON) are rejected by
the reader before they get here. Everything is vectorised over Arrow arrays; only rejected rows
are touched one by one, to format their reasons.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge._time import parse_time, to_us
from recforge.config import DataConfig
from recforge.data.schema import EVENT_SCHEMA

__all__ = ["Rejection", "accepted_window", "records_to_table", "validate_records", "validate_table"]

#: A control character (Unicode category Cc) anywhere in a string.
_CONTROL = r"[\x{00}-\x{1f}\x{7f}-\x{9f}]"
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_ISO = r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?([Zz]|[+-]\d{2}(:?\d{2})?)?$"
_ZONED = r"([Zz]|[+-]\d{2}(:?\d{2})?)$"
#: what :meth:`Rejection.to_json` escapes: the line breaks of ``str.splitlines`` that JSON allows
#: raw in a string (the others are control characters, which JSON escapes anyway)
_LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


@dataclass(frozen=True)
class Rejection:
    """One bad row: its source, where it was in it (``{"line": 12}``, ``{"index": 3}``,
    ``{"partition": 0, "offset": 41}`` ...), why it was rejected, and the row as read."""

    source: str
    location: dict[str, int]
    reason: str
    raw: Any = None

    def to_json(self) -> str:
        """One line of JSON. Text stays readable (not ``\\u``-escaped), except the characters
        that ``str.splitlines`` also breaks lines at (U+0085, U+2028, U+2029: valid raw in a JSON
        string, but a reader splitting the quarantine that way would cut the record)."""
        record = {"source": self.source, **self.location, "reason": self.reason, "raw": self.raw}
        return json.dumps(record, ensure_ascii=False, default=str).translate(_LINE_BREAKS)


@dataclass
class _Checks:
    """Per-row failure masks, in the order their reasons are reported."""

    n: int
    masks: list[tuple[np.ndarray, Callable[[int], str]]] = field(default_factory=list)
    exclusive: dict[int, str] = field(default_factory=dict)

    def add(self, mask: np.ndarray, reason: Callable[[int], str]) -> None:
        if mask.any():
            self.masks.append((mask, reason))

    def bad(self) -> np.ndarray:
        out = np.zeros(self.n, dtype=bool)
        for mask, _ in self.masks:
            out |= mask
        return out

    def reasons(self, row: int) -> str:
        if row in self.exclusive:
            return self.exclusive[row]
        return "; ".join(reason(row) for mask, reason in self.masks if mask[row])


def validate_table(
    table: pa.Table,
    config: DataConfig,
    *,
    source: str,
    locations: Mapping[str, np.ndarray],
    raw: Callable[[np.ndarray], Sequence[Any]] | None = None,
    extra: Mapping[int, list[str]] | None = None,
    malformed: Mapping[int, str] | None = None,
    now_us: int | None = None,
) -> tuple[pa.Table, list[Rejection]]:
    """Split ``table`` (columns named as in :data:`EVENT_SCHEMA`, of any type: strings from
    CSV, numbers or timestamps from JSON or Parquet; missing ``event_id``/``value`` columns are
    allowed) into the good rows, cast to :data:`EVENT_SCHEMA`, and the rejections.

    ``locations`` maps a name to one integer per row (``{"line": lines}``) and is copied into
    each rejection; ``raw(rows)`` returns what to show of the rejected rows (default: the row
    as a dict); ``extra`` adds reasons for given rows (from the caller's own checks) and
    ``malformed`` rows are rejected with that one reason only (they are not events at all).
    ``now_us`` is the time the window of accepted timestamps is measured from (microseconds
    since the epoch; default: the clock).
    """
    n = table.num_rows
    checks = _Checks(n)
    max_len = config.max_id_length

    ids: dict[str, pa.Array] = {}
    for name in ("event_id", "user_id", "item_id", "recommendation_id"):
        values, missing, too_long, wrong_type = _ids(table, name, n, max_len)
        ids[name] = values
        if name in ("user_id", "item_id"):
            checks.add(missing, _fixed(f"missing {name}"))
        checks.add(wrong_type, _fixed(f"{name} must be a string or a number"))
        checks.add(too_long, _fixed(f"{name} longer than {max_len} characters"))
        checks.add(_control(values), _fixed(f"{name} holds a control character"))

    types, missing_type, _, wrong_type = _ids(table, "event_type", n, None)
    checks.add(missing_type | wrong_type, _fixed("missing event_type"))
    checks.add(_control(types), _fixed("event_type holds a control character"))
    type_of = _texts(types)
    known = pc.is_in(types, value_set=pa.array(config.event_types, pa.large_string()))
    known_np = _mask(known)
    if config.unknown_event_type == "reject":
        unknown = ~known_np & ~missing_type & ~wrong_type
        checks.add(unknown, lambda r: f"unknown event_type {type_of(r)!r}")

    value, value_text, not_number = _numbers(table, "value", n, default=1.0)
    checks.add(not_number, lambda r: f"value {value_text(r)!r} is not a number")
    non_finite = ~not_number & ~np.isfinite(value)
    checks.add(non_finite, lambda r: f"value {value_text(r)!r} is not finite")
    too_large = ~not_number & np.isfinite(value) & (np.abs(value) > config.max_value)
    checks.add(too_large, lambda r: f"value {value[r]:g} is larger than data.max_value {config.max_value:g}")
    negative = ~not_number & (value < 0)
    if config.allow_negative:
        allowed = pc.is_in(types, value_set=pa.array(config.allow_negative, pa.large_string()))
        negative &= ~_mask(allowed)
    checks.add(negative, lambda r: f"negative value {value[r]:g} for event_type {type_of(r)!r}")

    ts_us, ts_text, ts_missing, ts_bad = _timestamps(table, n)
    checks.add(ts_missing, _fixed("missing timestamp"))
    checks.add(ts_bad, lambda r: f"unparsable timestamp {ts_text(r)!r} (expected ISO 8601 or Unix seconds)")
    parsed = ~ts_missing & ~ts_bad
    earliest, latest = accepted_window(config, now_us)
    checks.add(
        parsed & (ts_us < earliest),
        lambda r: f"timestamp {ts_text(r)!r} is before data.min_timestamp {config.min_timestamp}",
    )
    checks.add(
        parsed & (ts_us > latest),
        lambda r: (
            f"timestamp {ts_text(r)!r} is more than data.max_future_seconds "
            f"({config.max_future_seconds:g} s) in the future"
        ),
    )

    if extra:
        extra_mask = np.zeros(n, dtype=bool)
        extra_mask[list(extra)] = True
        checks.masks.insert(0, (extra_mask, lambda r: "; ".join(extra.get(r, []))))
    if malformed:
        checks.exclusive = dict(malformed)
        checks.add(np.isin(np.arange(n), list(malformed)), lambda r: malformed[r])

    bad = checks.bad()
    good = ~bad
    good_table = pa.table(
        {
            "event_id": ids["event_id"].filter(good),
            "user_id": ids["user_id"].filter(good),
            "item_id": ids["item_id"].filter(good),
            "event_type": types.filter(good),
            "value": pa.array(value[good], pa.float64()),
            "timestamp": pa.array(ts_us[good], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "recommendation_id": ids["recommendation_id"].filter(good),
        },
        schema=EVENT_SCHEMA,
    )
    rows = np.flatnonzero(bad)
    if not len(rows):
        return good_table, []
    shown = raw(rows) if raw is not None else table.take(pa.array(rows)).to_pylist()
    rejections = [
        Rejection(
            source,
            {key: int(where[row]) for key, where in locations.items()},
            checks.reasons(int(row)),
            shown[j],
        )
        for j, row in enumerate(rows)
    ]
    rejections.sort(key=lambda rejection: tuple(rejection.location.values()))
    return good_table, rejections


def accepted_window(config: DataConfig, now_us: int | None = None) -> tuple[int, int]:
    """``(earliest, latest)`` accepted timestamp, in microseconds since the epoch (both
    included): ``data.min_timestamp`` (never before 1970) and ``now + data.max_future_seconds``."""
    now = time.time_ns() // 1000 if now_us is None else int(now_us)
    earliest = max(0, to_us(parse_time(config.min_timestamp)))
    return earliest, now + round(config.max_future_seconds * 1e6)


def validate_records(
    records: Sequence[Any],
    config: DataConfig,
    *,
    source: str,
    locations: Mapping[str, np.ndarray] | None = None,
    raw: Callable[[np.ndarray], Sequence[Any]] | None = None,
) -> tuple[pa.Table, list[Rejection]]:
    """Validate in-memory events (e.g. a parsed JSON request body or Kafka messages).

    Each record should be a dict with the :data:`EVENT_SCHEMA` keys (``event_id`` and
    ``value`` optional; other keys are ignored). ``locations`` defaults to
    ``{"index": 0..n-1}``; ``raw`` defaults to the records themselves.
    """
    n = len(records)
    if locations is None:
        locations = {"index": np.arange(n)}
    table, extra, not_objects = records_to_table(records)
    if raw is None:
        raw = lambda rows: [records[int(r)] for r in rows]  # noqa: E731
    malformed = dict.fromkeys(not_objects, "not a JSON object")
    return validate_table(
        table, config, source=source, locations=locations, raw=raw, extra=extra, malformed=malformed
    )


def records_to_table(records: Sequence[Any]) -> tuple[pa.Table, dict[int, list[str]], list[int]]:
    """Records (dicts) as a table of strings: ``(table, extra reasons, rows that are not dicts)``.

    Numbers become their decimal text (parsed again by validation), strings stay, anything else
    (lists, objects, booleans) becomes its JSON text, with the extra reason ``"<field> must be
    a string or a number"`` for ids and event types.
    """
    n = len(records)
    extra: dict[int, list[str]] = {}
    not_objects: list[int] = []
    columns: dict[str, list[Any]] = {name: [None] * n for name in EVENT_SCHEMA.names}
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            not_objects.append(row)
            continue
        for name, column in columns.items():
            value = record.get(name)
            if value is None or isinstance(value, str):
                column[row] = value
            elif isinstance(value, int | float) and not isinstance(value, bool):
                column[row] = repr(value) if isinstance(value, float) else str(value)
            else:  # a list, object or boolean: kept as JSON text, so messages can show it
                column[row] = json.dumps(value, default=str)
                if name not in ("value", "timestamp"):  # those fail to parse by themselves
                    extra.setdefault(row, []).append(f"{name} must be a string or a number")
    table = pa.table({name: pa.array(values, pa.large_string()) for name, values in columns.items()})
    return table, extra, not_objects


# column parsers --------------------------------------------------------------------------
def _fixed(message: str) -> Callable[[int], str]:
    return lambda row: message


def _column(table: pa.Table, name: str, n: int) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(n, pa.large_string())
    column = table.column(name)
    return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)


def _ids(
    table: pa.Table, name: str, n: int, max_len: int | None
) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    """``(strings, missing, too_long, wrong_type)``: ids as large strings ("" becomes null)."""
    column = _column(table, name, n)
    wrong_type = np.zeros(n, dtype=bool)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        if (
            pa.types.is_integer(column.type)
            or pa.types.is_floating(column.type)
            or pa.types.is_null(column.type)
        ):
            column = column.cast(pa.large_string())
        else:
            wrong_type = _mask(column.is_valid())
            column = pa.nulls(n, pa.large_string())
    column = column.cast(pa.large_string())
    too_long = np.zeros(n, dtype=bool)
    if column.null_count == n:  # absent (recommendation_id, mostly)
        return column, ~wrong_type, too_long, wrong_type
    # byte lengths from the offsets: only a batch with an empty id pays for marking it null,
    # and only one with an id longer than max_len bytes for counting characters
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)[column.offset : column.offset + n + 1]
    size = np.diff(offsets)
    valid = _mask(column.is_valid()) if column.null_count else np.ones(n, dtype=bool)
    empty = valid & (size == 0)
    if np.count_nonzero(empty):
        column = pc.if_else(pa.array(empty), pa.scalar(None, pa.large_string()), column)
    missing = (~valid | empty) & ~wrong_type
    if max_len is not None and np.count_nonzero(size > max_len):
        too_long = _mask(pc.greater(pc.utf8_length(column), max_len))
    return column, missing, too_long, wrong_type


def _numbers(
    table: pa.Table, name: str, n: int, default: float
) -> tuple[np.ndarray, Callable[[int], Any], np.ndarray]:
    """``(float64 values, text of row, not_a_number)``; null or "" is ``default``."""
    column = _column(table, name, n)
    text = _texts(column)
    if pa.types.is_null(column.type):
        return np.full(n, default), text, np.zeros(n, dtype=bool)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        values = column.cast(pa.float64()).fill_null(default)
        return np.asarray(values.to_numpy(zero_copy_only=False), np.float64), text, np.zeros(n, dtype=bool)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        valid = _mask(column.is_valid())
        return np.full(n, default), text, valid
    strings = pc.utf8_trim_whitespace(column.cast(pa.large_string()))
    strings = pc.if_else(pc.equal(pc.binary_length(strings), 0), pa.scalar(None, pa.large_string()), strings)
    parsed, ok = _parse_floats(strings)
    values = np.where(ok, parsed, default)
    not_number = ~ok & _mask(strings.is_valid())
    return values, text, not_number


def _parse_floats(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Floats from strings (incl. "nan"/"inf"); ``ok`` is False where a string is not a number."""
    try:  # the common case: every non-null string is a number
        parsed = pc.cast(strings, pa.float64())
        ok = _mask(parsed.is_valid())
        return np.asarray(parsed.fill_null(0.0).to_numpy(zero_copy_only=False), np.float64), ok
    except pa.ArrowInvalid:
        pass
    lowered = pc.utf8_lower(strings)
    numeric = pc.or_(
        pc.match_substring_regex(strings, _NUMBER),
        pc.is_in(lowered, value_set=pa.array(["nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity"])),
    ).fill_null(False)
    parsed = pc.cast(pc.if_else(numeric, strings, pa.scalar(None, pa.large_string())), pa.float64())
    ok = _mask(numeric)
    return np.asarray(parsed.fill_null(0.0).to_numpy(zero_copy_only=False), np.float64), ok


def _timestamps(table: pa.Table, n: int) -> tuple[np.ndarray, Callable[[int], Any], np.ndarray, np.ndarray]:
    """``(microseconds since the epoch, text of row, missing, unparsable)``."""
    column = _column(table, "timestamp", n)
    text = _texts(column)
    missing = _mask(column.is_null())
    none = np.zeros(n, dtype=bool)
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            column = column.cast(pa.timestamp(kind.unit, tz="UTC"))
        us = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).fill_null(0)
        return np.asarray(us.to_numpy(zero_copy_only=False), np.int64), text, missing, none
    if pa.types.is_date(kind):
        days = column.cast(pa.date32()).cast(pa.int32()).fill_null(0)
        us = np.asarray(days.to_numpy(zero_copy_only=False), np.int64) * 86_400_000_000
        return us, text, missing, none
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        seconds = np.asarray(column.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False))
        return _seconds_to_us(seconds, missing), text, missing, ~missing & ~np.isfinite(seconds)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return np.zeros(n, np.int64), text, missing, ~missing
    strings = pc.utf8_trim_whitespace(column.cast(pa.large_string()))
    empty = pc.equal(pc.binary_length(strings), 0).fill_null(False)
    strings = pc.if_else(empty, pa.scalar(None, pa.large_string()), strings)
    missing = _mask(strings.is_null())
    us, ok = _parse_time_strings(strings)
    return us, text, missing, ~missing & ~ok


def _parse_time_strings(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds and an ``ok`` mask from strings of Unix seconds or ISO 8601."""
    n = len(strings)
    us = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    seconds, numeric = _parse_floats(strings)
    numeric &= np.isfinite(seconds)
    us[numeric] = _seconds_to_us(seconds[numeric], np.zeros(int(numeric.sum()), dtype=bool))
    ok |= numeric
    rest = ~numeric & _mask(strings.is_valid())
    if not rest.any():
        return us, ok
    iso = rest & _mask(pc.match_substring_regex(strings, _ISO))
    zoned = iso & _mask(pc.match_substring_regex(strings, _ZONED))
    for mask, target in ((zoned, pa.timestamp("us", tz="UTC")), (iso & ~zoned, pa.timestamp("us"))):
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        subset = strings.take(pa.array(rows))
        try:
            parsed = np.asarray(subset.cast(target).cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
            good = np.ones(len(rows), dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            parsed, good = _parse_iso_one_by_one(subset.to_pylist())
        us[rows] = parsed
        ok[rows] = good
    return us, ok


def _parse_iso_one_by_one(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The slow path for ISO-looking strings Arrow refuses (``2024-02-30``, nanoseconds...)."""
    us = np.zeros(len(texts), dtype=np.int64)
    ok = np.zeros(len(texts), dtype=bool)
    for j, text in enumerate(texts):
        try:
            when = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
        except ValueError:
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delta = when - datetime(1970, 1, 1, tzinfo=UTC)
        us[j] = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        ok[j] = True
    return us, ok


def _seconds_to_us(seconds: np.ndarray, missing: np.ndarray) -> np.ndarray:
    safe = np.where(missing | ~np.isfinite(seconds), 0.0, seconds)
    safe = np.clip(safe, -9e12, 9e12)  # far outside the accepted range, but no int64 overflow
    return np.round(safe * 1e6).astype(np.int64)


def _control(strings: pa.Array) -> np.ndarray:
    """Which rows of ``strings`` (large strings) hold a control character. In UTF-8 the C0
    controls and DEL are single bytes (``< 0x20``, ``0x7f``) and the C1 controls are ``0xc2``
    followed by ``0x80``-``0x9f``, so one NumPy scan of the data buffer clears the common batch
    (~5 us per 1,000 ids); only a buffer where it finds one is searched row by row (a regex,
    ~60 us). The buffer may hold bytes outside the array's slice: they can only send it to the
    regex, never hide a row."""
    data = strings.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    if not (
        np.count_nonzero((raw < 0x20) | (raw == 0x7F))
        or np.count_nonzero((raw[:-1] == 0xC2) & ((raw[1:] & 0xE0) == 0x80))
    ):
        return np.zeros(len(strings), dtype=bool)
    return _mask(pc.match_substring_regex(strings, _CONTROL))


def _mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array as NumPy, null as False."""
    return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _texts(column: pa.Array) -> Callable[[int], Any]:
    """Access to one row's original value, for messages (used for rejected rows only)."""

    def text(row: int) -> Any:
        value = column[row].as_py()
        return value.isoformat() if isinstance(value, datetime) else value

    return text
