"""The catalog item record, and the validation of one raw record into a patch.

=============  ============================================================================
field          meaning
=============  ============================================================================
item_id        the item's external id, 1..``max_id_length`` characters (as in events)
categories     a list of category names (each 1..128 characters, no ``,`` and no ``|``:
               ``?category=a,b`` and CSV files separate them with those), at most 64
available      ``true`` (the default) or ``false`` (sold out, hidden): unavailable items are
               in no answer
created_at     when the item appeared (UTC); ``/latest`` orders by it; defaults to the time
               the store first saw the item; years 1000..9999
attributes     a flat JSON object of strings and numbers (title, brand, price, image_url,
               ...): at most 64 keys of 1..64 characters, strings of at most 4,096
=============  ============================================================================

A raw record (a dict from a file, an HTTP body or a Kafka message) becomes an
:class:`ItemPatch`: the fields it has, validated; a field it lacks is ``None`` ("not given").
Upserting a patch changes only the fields it has (:mod:`recforge.catalog.store`); its
``attributes`` are merged key by key, a ``null`` value deleting the key (JSON merge patch,
RFC 7396). :func:`validate_record` returns the patch or the reasons it is bad, naming each
field, never raising.

Where other keys go (``extra``): in files (CSV, Parquet, JSONL, MovieLens) every column that
is not a field is an attribute, so a flat export reads as it is; over HTTP and Kafka a record
is exactly the five fields, and another key is an error (a misspelt ``"availabel": false``
must not pass silently as an attribute).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from recforge.data.schema import MAX_ID_LENGTH

__all__ = [
    "FIELDS",
    "MAX_ATTRIBUTES",
    "MAX_CATEGORIES",
    "ItemPatch",
    "check_category",
    "validate_record",
]

FIELDS = ("item_id", "categories", "available", "created_at", "attributes")
MAX_CATEGORIES = 64
MAX_CATEGORY_LENGTH = 128
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_TEXT = 4096
#: Years 1000..9999 (items may be older than Unix time: a film of 1925).
_MIN_US = -30_610_224_000_000_000
_MAX_US = 253_402_300_800_000_000
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})
_YEAR_ONLY = re.compile(r"^\d{4}$")


@dataclass(frozen=True)
class ItemPatch:
    """A validated record: ``None`` means the field was not given. ``attributes`` values may be
    ``None`` (delete that key when merging)."""

    item_id: str
    categories: tuple[str, ...] | None = None
    available: bool | None = None
    created_at_us: int | None = None
    attributes: dict[str, str | int | float | None] | None = None


def check_category(name: str) -> str | None:
    """Why ``name`` cannot be a category name, or ``None`` when it can."""
    if not name:
        return "an empty category name"
    if len(name) > MAX_CATEGORY_LENGTH:
        return f"category name longer than {MAX_CATEGORY_LENGTH} characters"
    if "," in name or "|" in name:
        return f"category name {name!r} contains ',' or '|'"
    return None


def validate_record(
    record: Any,
    *,
    max_id_length: int = MAX_ID_LENGTH,
    extra: Literal["attributes", "reject"] = "reject",
) -> ItemPatch | list[str]:
    """The patch ``record`` stands for, or the list of reasons it is bad (see the module doc)."""
    if not isinstance(record, Mapping):
        return ["not a JSON object"]
    reasons: list[str] = []
    item_id = _item_id(record.get("item_id"), max_id_length, reasons)
    categories = _categories(record.get("categories"), reasons)
    available = _available(record.get("available"), reasons)
    created = _created_at(record.get("created_at"), reasons)
    attributes = _attributes(record.get("attributes"), reasons)
    others = [key for key in record if key not in FIELDS]
    if others and extra == "reject":
        reasons.append(f"unknown field {others[0]!r} (fields: {', '.join(FIELDS)})")
    elif others:
        flat = {str(key): record[key] for key in others if record[key] is not None}
        more = _attributes(flat, reasons) if flat else None
        if more:
            attributes = {**more, **(attributes or {})}
    if reasons or item_id is None:
        return reasons or ["missing item_id"]
    return ItemPatch(item_id, categories, available, created, attributes)


def _item_id(value: Any, limit: int, reasons: list[str]) -> str | None:
    if value is None or value == "":
        reasons.append("missing item_id")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        reasons.append("item_id must be a string or an integer")
        return None
    text = str(value)
    if len(text) > limit:
        reasons.append(f"item_id longer than {limit} characters")
        return None
    return text


def _categories(value: Any, reasons: list[str]) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        names = [part.strip() for part in value.split("|")] if value.strip() else []
    elif isinstance(value, list | tuple):
        if not all(isinstance(v, str) for v in value):
            reasons.append("categories must be a list of strings")
            return None
        names = [v.strip() for v in value]
    else:
        reasons.append("categories must be a list of strings (or a '|'-separated string)")
        return None
    for name in names:
        problem = check_category(name)
        if problem:
            reasons.append(problem)
            return None
    unique = tuple(dict.fromkeys(names))
    if len(unique) > MAX_CATEGORIES:
        reasons.append(f"more than {MAX_CATEGORIES} categories")
        return None
    return unique


def _available(value: Any, reasons: list[str]) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    reasons.append(f"available must be true or false, got {value!r}")
    return None


def _created_at(value: Any, reasons: list[str]) -> int | None:
    if value is None or value == "":
        return None
    us: int | None = None
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
        us = round(when.timestamp() * 1e6)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        us = _seconds_us(float(value))
    elif isinstance(value, str):
        us = _parse_time_text(value.strip())
    if us is None:
        reasons.append(f"unparsable created_at {value!r} (expected ISO 8601 or Unix seconds)")
        return None
    if not _MIN_US <= us < _MAX_US:
        reasons.append(f"created_at {value!r} outside years 1000..9999")
        return None
    return us


def _seconds_us(seconds: float) -> int | None:
    """Microseconds of Unix seconds; far outside the accepted years (or not finite): a value just
    outside them, so the range check names it (never an overflow)."""
    if not math.isfinite(seconds):
        return None
    return round(min(max(seconds, -1e14), 1e14) * 1e6)


def _parse_time_text(text: str) -> int | None:
    try:
        return _seconds_us(float(text)) if not _YEAR_ONLY.match(text) else None
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1e6)


def _attributes(value: Any, reasons: list[str]) -> dict[str, str | int | float | None] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        reasons.append("attributes must be a JSON object")
        return None
    if len(value) > MAX_ATTRIBUTES:
        reasons.append(f"more than {MAX_ATTRIBUTES} attributes")
        return None
    out: dict[str, str | int | float | None] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_ATTRIBUTE_KEY:
            reasons.append(f"attribute names must be 1..{MAX_ATTRIBUTE_KEY} characters, got {key!r}")
            return None
        kind = type(item)
        if kind is str:
            if len(item) > MAX_ATTRIBUTE_TEXT:
                reasons.append(f"attribute {key!r} longer than {MAX_ATTRIBUTE_TEXT} characters")
                return None
            out[key] = item
        elif item is None or (kind is float and math.isfinite(item)) or (kind is int and abs(item) < 2**63):
            out[key] = item
        else:
            shown = repr(item) if len(repr(item)) < 60 else repr(item)[:57] + "..."
            reasons.append(f"attribute {key!r} must be a string or a finite number (64-bit), got {shown}")
            return None
    return out
