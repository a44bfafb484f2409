"""Attribution: which impression, if any, each event followed.

The rules, in order, for an event on item ``i`` by user ``u`` at time ``t``:

1. **Named.** The event carries a ``recommendation_id`` of a recorded impression that showed
   ``i``: it goes to that impression, at ``i``'s position, whoever the user and whenever the
   time (the client said so).
2. **Implied.** Otherwise (no id, an id never recorded, or one whose answer did not show ``i``):
   it goes to the latest impression of ``u`` that showed ``i`` at a time ``s`` with
   ``t - window <= s <= t``; among impressions at the same time, the one recorded last.
3. Else it is not attributed.

:func:`attribute` is vectorised: impressions are exploded into one row per shown item, users,
items and recommendation ids are coded against one dictionary each, rule 1 is a sorted search
of ``(recommendation, item)`` keys, and rule 2 one sort of impressions and events together by
``(user-item pair, time, impression before event, recorded order)`` followed by a running
maximum of the last impression position, checked against the start of the pair's run and the
window. :func:`attribute_reference` is the slow, obvious twin the tests compare it with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.data.schema import timestamps_us

__all__ = ["Attribution", "Shown", "attribute", "attribute_reference", "explode"]


@dataclass(frozen=True)
class Shown:
    """Impressions exploded to one row per shown item: ``impression`` (row of the impressions
    table), ``position`` (0 = first) and ``item_id``."""

    impression: np.ndarray
    position: np.ndarray
    item_id: pa.Array


@dataclass(frozen=True)
class Attribution:
    """Per event: the impression row it is attributed to (``-1``: none), the item's position
    in it (``-1``: none) and whether the event named it (rule 1)."""

    impression: np.ndarray
    position: np.ndarray
    named: np.ndarray

    @property
    def attributed(self) -> np.ndarray:
        return self.impression >= 0


def explode(impressions: pa.Table) -> Shown:
    """One row per (impression, shown item)."""
    items = impressions.column("items").combine_chunks()
    if isinstance(items, pa.ChunkedArray):  # an empty table
        items = pa.array([], impressions.schema.field("items").type)
    parent = np.asarray(pc.list_parent_indices(items).to_numpy(zero_copy_only=False), dtype=np.int64)
    offsets = np.asarray(items.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    position = np.arange(len(parent), dtype=np.int64) - (offsets[parent] - offsets[0])
    return Shown(parent, position.astype(np.int32), pc.list_flatten(items))


def _codes(*columns: pa.Array | pa.ChunkedArray) -> tuple[list[np.ndarray], int]:
    """Each column's values coded against one shared dictionary (null: ``-1``), and its size."""
    joint = pa.chunked_array(
        [c.cast(pa.large_string()) for column in columns for c in _chunks(column)], pa.large_string()
    )
    encoded = pc.dictionary_encode(joint).combine_chunks()
    codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    out, start = [], 0
    for column in columns:
        out.append(codes[start : start + len(column)])
        start += len(column)
    return out, len(encoded.dictionary)


def _chunks(column: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


def attribute(impressions: pa.Table, events: pa.Table, window_us: int) -> Attribution:
    """Attribute ``events`` (``user_id``, ``item_id``, ``timestamp``, ``recommendation_id``) to
    ``impressions`` (:data:`~recforge.online.impressions.IMPRESSION_SCHEMA`) by the rules of
    the module docstring."""
    n = events.num_rows
    impression = np.full(n, -1, dtype=np.int64)
    position = np.full(n, -1, dtype=np.int32)
    named = np.zeros(n, dtype=bool)
    shown = explode(impressions)
    if not n or not len(shown.impression):
        return Attribution(impression, position, named)
    (shown_item, event_item), n_items = _codes(shown.item_id, events.column("item_id"))

    # rule 1: (recommendation, item) keys of the shown rows, searched for the events' keys
    (shown_rec, event_rec), _ = _codes(
        impressions.column("recommendation_id").take(pa.array(shown.impression)),
        events.column("recommendation_id"),
    )
    shown_key = shown_rec * n_items + shown_item
    order = np.argsort(shown_key, kind="stable")
    sorted_key = shown_key[order]
    asks = np.flatnonzero(event_rec >= 0)
    wanted = event_rec[asks] * n_items + event_item[asks]
    at = np.minimum(np.searchsorted(sorted_key, wanted), len(sorted_key) - 1)
    found = sorted_key[at] == wanted
    rows = order[at[found]]
    hits = asks[found]
    impression[hits] = shown.impression[rows]
    position[hits] = shown.position[rows]
    named[hits] = True

    # rule 2: one sort of shown rows and the remaining events by (pair, time, kind, recorded order)
    (shown_user, event_user), _ = _codes(
        impressions.column("user_id").take(pa.array(shown.impression)), events.column("user_id")
    )
    shown_ts = timestamps_us(impressions.column("timestamp"))[shown.impression]
    rest = np.flatnonzero(~named)
    candidates = np.flatnonzero(shown_user >= 0)
    if not len(rest) or not len(candidates):
        return Attribution(impression, position, named)
    pair = np.concatenate(
        [
            shown_user[candidates] * n_items + shown_item[candidates],
            event_user[rest] * n_items + event_item[rest],
        ]
    )
    when = np.concatenate([shown_ts[candidates], timestamps_us(events.column("timestamp"))[rest]])
    kind = np.concatenate([np.zeros(len(candidates), np.int8), np.ones(len(rest), np.int8)])
    recorded = np.concatenate([shown.impression[candidates], np.zeros(len(rest), np.int64)])
    merged = np.lexsort((recorded, kind, when, pair))
    is_shown = kind[merged] == 0
    spot = np.arange(len(merged))
    last = np.maximum.accumulate(np.where(is_shown, spot, -1))
    sorted_pair = pair[merged]
    run_start = np.maximum.accumulate(
        np.where(np.diff(sorted_pair, prepend=sorted_pair[0] - 1) != 0, spot, 0)
    )
    is_event = ~is_shown
    source = last[is_event]
    ok = source >= run_start[is_event]
    event_rows = merged[is_event] - len(candidates)  # positions in ``rest``
    source_rows = merged[np.where(ok, source, 0)]  # positions in ``candidates``
    ok &= when[merged[is_event]] - when[source_rows] <= window_us
    chosen = candidates[source_rows[ok]]
    targets = rest[event_rows[ok]]
    impression[targets] = shown.impression[chosen]
    position[targets] = shown.position[chosen]
    return Attribution(impression, position, named)


def attribute_reference(impressions: pa.Table, events: pa.Table, window_us: int) -> Attribution:
    """The rules of the module docstring, one event at a time (slow; for tests)."""
    shown_at: dict[tuple[str, str], tuple[int, int]] = {}
    by_user: dict[str, list[tuple[int, int, dict[str, int]]]] = {}
    times = timestamps_us(impressions.column("timestamp")).tolist()
    for row, (rid, user, items) in enumerate(
        zip(
            impressions.column("recommendation_id").to_pylist(),
            impressions.column("user_id").to_pylist(),
            impressions.column("items").to_pylist(),
            strict=True,
        )
    ):
        places = {item: p for p, item in reversed(list(enumerate(items)))}
        for item, p in places.items():
            shown_at.setdefault((rid, item), (row, p))
        if user is not None:
            by_user.setdefault(user, []).append((times[row], row, places))
    n = events.num_rows
    impression = np.full(n, -1, dtype=np.int64)
    position = np.full(n, -1, dtype=np.int32)
    named = np.zeros(n, dtype=bool)
    event_times = timestamps_us(events.column("timestamp")).tolist()
    for k, (user, item, rid) in enumerate(
        zip(
            events.column("user_id").to_pylist(),
            events.column("item_id").to_pylist(),
            events.column("recommendation_id").to_pylist(),
            strict=True,
        )
    ):
        if rid is not None and (rid, item) in shown_at:
            impression[k], position[k] = shown_at[(rid, item)]
            named[k] = True
            continue
        best: tuple[int, int, int] | None = None
        for at, row, places in by_user.get(user, []):
            inside = item in places and event_times[k] - window_us <= at <= event_times[k]
            if inside and (best is None or (at, row) > best[:2]):
                best = (at, row, places[item])
        if best is not None:
            impression[k], position[k] = best[1], best[2]
    return Attribution(impression, position, named)
