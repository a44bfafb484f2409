"""Online metrics: what the shown lists led to, per model version and source.

With the events attributed (:mod:`recforge.online.attribution`), an impression is

* **clicked** when any event was attributed to it (an event on a shown item);
* **converted** when an event of a conversion type (``[experiments] conversion_types``, e.g.
  ``purchase``) was.

Per group of impressions (a version and source, or an experiment's arm): ``impressions``,
``users`` (distinct), ``clicks`` and ``ctr = clicked / impressions``, ``conversions`` and
``conversion_rate = converted / impressions``, ``events`` attributed, and by position ``p``:
the impressions that showed at least ``p + 1`` items, those whose item at ``p`` got an event
(``ctr``) and a conversion (``conversion_rate``). :func:`online_report` reads the home's stores
and returns all of it as plain JSON-able data (the CLI, Prometheus and the dashboard use it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge._time import iso
from recforge.config import Config
from recforge.data.store import EventStore
from recforge.online.attribution import Attribution, attribute
from recforge.online.impressions import ImpressionStore

__all__ = ["ATTRIBUTION_COLUMNS", "Outcomes", "group_rates", "online_report", "outcomes", "read_window"]

#: The event columns attribution and the rates read.
ATTRIBUTION_COLUMNS = ("user_id", "item_id", "event_type", "timestamp", "recommendation_id")


@dataclass(frozen=True)
class Outcomes:
    """Per impression: ``clicked``, ``converted``, ``events`` attributed; and per (impression,
    position) with an event: ``click_at`` / ``convert_at`` pairs as ``(impressions, positions)``
    index arrays (each pair once)."""

    clicked: np.ndarray
    converted: np.ndarray
    events: np.ndarray
    click_at: tuple[np.ndarray, np.ndarray]
    convert_at: tuple[np.ndarray, np.ndarray]


def outcomes(
    n_impressions: int, events: pa.Table, attribution: Attribution, conversion_types: list[str]
) -> Outcomes:
    """What each impression led to, from its attributed events."""
    rows = attribution.impression
    hit = rows >= 0
    converting = _mask(
        pc.is_in(events.column("event_type"), value_set=pa.array(conversion_types, pa.large_string()))
    )
    counts = np.bincount(rows[hit], minlength=n_impressions)
    bought = np.bincount(rows[hit & converting], minlength=n_impressions)
    return Outcomes(
        counts > 0,
        bought > 0,
        counts,
        _pairs(rows[hit], attribution.position[hit]),
        _pairs(rows[hit & converting], attribution.position[hit & converting]),
    )


def _pairs(rows: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(rows):
        return rows, positions.astype(np.int64)
    keys = np.unique(rows * (int(positions.max()) + 1) + positions)
    width = int(positions.max()) + 1
    return keys // width, keys % width


def _mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(array.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def group_rates(
    impressions: pa.Table, found: Outcomes, members: np.ndarray, max_positions: int | None = None
) -> dict[str, Any]:
    """The rates of the impressions ``members`` (row indices), by position too."""
    count = len(members)
    users = impressions.column("user_id").take(pa.array(members))
    lengths = np.asarray(
        pc.list_value_length(impressions.column("items").take(pa.array(members))).to_numpy(
            zero_copy_only=False
        ),
        dtype=np.int64,
    )
    clicks = int(found.clicked[members].sum())
    conversions = int(found.converted[members].sum())
    inside = np.zeros(len(found.clicked), dtype=bool)
    inside[members] = True
    width = int(lengths.max()) if len(lengths) else 0
    if max_positions is not None:
        width = min(width, max_positions)
    shown = count - np.cumsum(np.bincount(lengths, minlength=width + 1))[:width]  # lists longer than p
    by_position = []
    click_rows, click_pos = found.click_at
    convert_rows, convert_pos = found.convert_at
    clicked_at = np.bincount(click_pos[inside[click_rows]], minlength=width)[:width]
    converted_at = np.bincount(convert_pos[inside[convert_rows]], minlength=width)[:width]
    for p in range(width):
        by_position.append(
            {
                "position": p,
                "impressions": int(shown[p]),
                "clicks": int(clicked_at[p]),
                "ctr": _rate(int(clicked_at[p]), int(shown[p])),
                "conversions": int(converted_at[p]),
                "conversion_rate": _rate(int(converted_at[p]), int(shown[p])),
            }
        )
    return {
        "impressions": count,
        "users": int(pc.count_distinct(users).as_py()),
        "clicks": clicks,
        "ctr": _rate(clicks, count),
        "conversions": conversions,
        "conversion_rate": _rate(conversions, count),
        "events": int(found.events[members].sum()),
        "by_position": by_position,
    }


def _encode(column: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    encoded = pc.dictionary_encode(column).combine_chunks()
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64), len(encoded.dictionary)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def read_window(
    home: str | Path, start: datetime | None, end: datetime | None = None
) -> tuple[pa.Table, pa.Table]:
    """The impressions and the events (:data:`ATTRIBUTION_COLUMNS`) with ``start <= time <
    end``."""
    impressions = ImpressionStore(home).scan(start, end)
    events = EventStore(home).scan(list(ATTRIBUTION_COLUMNS), start=start, end=end)
    return impressions, events


def online_report(
    home: str | Path, config: Config, since: timedelta | None = None, *, now: datetime | None = None
) -> dict[str, Any]:
    """Impressions, click-through and conversion per model version and source, over the last
    ``since`` (all recorded impressions when ``None``), as JSON-able data."""
    settings = config.experiments
    now = now or datetime.now(UTC)
    start = None if since is None else now - since
    impressions, events = read_window(home, start)
    attribution = attribute(impressions, events, round(settings.attribution_hours * 3_600e6))
    found = outcomes(impressions.num_rows, events, attribution, settings.conversion_types)
    groups = []
    if impressions.num_rows:
        versions, _ = _encode(impressions.column("version"))
        sources, n_sources = _encode(impressions.column("source"))
        index = versions * n_sources + sources
        for code in np.unique(index):
            members = np.flatnonzero(index == code)
            first = int(members[0])
            groups.append(
                {
                    "version": impressions.column("version")[first].as_py(),
                    "source": impressions.column("source")[first].as_py(),
                    **group_rates(impressions, found, members),
                }
            )
        groups.sort(key=lambda g: (g["version"], g["source"]))
    return {
        "since": iso(start),
        "until": iso(now),
        "attribution_hours": settings.attribution_hours,
        "conversion_types": list(settings.conversion_types),
        "impressions": impressions.num_rows,
        "events": events.num_rows,
        "attributed_events": int(attribution.attributed.sum()),
        "named_events": int(attribution.named.sum()),
        "groups": groups,
    }
