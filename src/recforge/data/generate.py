"""Synthetic marketplace events with a planted taste structure.

The generative story (all vectorised NumPy, seeded, so a seed gives the same events bit for bit):

* ``items`` items ``i<n>`` fall evenly into ``categories`` categories; item popularity is
  Zipf-like, ``pop_i ∝ rank_i ** -0.8`` over a random ranking.
* ``users`` users ``u<n>``; activity (the share of all events) is lognormal(0, 1); taste over
  categories is Dirichlet(0.1): most users care about one or two categories.
* A user's events come in sessions (a new session with probability 1/6 per event) spread
  uniformly over ``days`` days; events within a session are 5 s + Exp(45 s) apart.
* A session browses one category drawn from the user's taste (10% of sessions: a random
  category); each event there picks an item of the category by popularity, except 5% that
  pick from the whole catalogue by popularity.
* Event types: view 86%, like 7%, cart 4.5%, purchase 2.5% (views ≫ likes > carts >
  purchases); value 1.0.

Because tastes are stable over time and concentrated on categories, a factor model trained on
the past predicts a user's future items far better than global popularity does (the tests
check this with a truncated SVD on a temporal holdout).

Event ids are ``e<tag>-<n>`` in time order, where ``tag`` hashes every generation parameter:
files generated with different seeds (or sizes) never share an id, and regenerating the same
file re-ingests as duplicates.

**True tastes.** :class:`Tastes` keeps the hidden parameters (item categories and popularity,
user tastes and activity), saved beside a generated file (:func:`tastes_path`), so that a
simulation (:mod:`recforge.online.simulator`) can draw users who behave as the events say. The
chance that a user's next event is on item ``i`` of category ``c`` is

    P(i | u) = (1 - g) * ((1 - w) * taste[u, c] + w / C) * pop_i / sum_{j in c} pop_j
               + g * pop_i / sum_j pop_j

with ``w`` = 0.10 (a random category) and ``g`` = 0.05 (a pick from the whole catalogue).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recforge.data.schema import CONTENT_COLUMNS, EVENT_SCHEMA
from recforge.errors import RecforgeError

__all__ = [
    "EVENT_TYPE_SHARES",
    "Tastes",
    "default_categories",
    "generate_events",
    "generate_with_tastes",
    "item_layout",
    "tastes_path",
    "write_events",
]

EVENT_TYPE_SHARES = {"view": 0.86, "like": 0.07, "cart": 0.045, "purchase": 0.025}
#: Events start at this time and span ``days`` days.
START = datetime(2024, 1, 1, tzinfo=UTC)
_SESSION_LENGTH = 6.0
_RANDOM_SESSION = 0.10
_GLOBAL_PICK = 0.05
_ZIPF = 0.8
_TASTE = 0.1
_GENERATED = pa.schema([EVENT_SCHEMA.field(name) for name in ("event_id", *CONTENT_COLUMNS)])


def default_categories(items: int) -> int:
    """About ``sqrt(items) / 2`` categories, between 2 and 64."""
    return int(np.clip(round(np.sqrt(items) / 2), 2, 64))


@dataclass(frozen=True)
class Tastes:
    """The hidden parameters behind generated events: ``item_category`` and ``popularity`` per
    item ``i<n>``, ``taste`` (users x categories, rows sum to 1) and ``activity`` per user
    ``u<n>``."""

    item_category: np.ndarray
    popularity: np.ndarray
    taste: np.ndarray
    activity: np.ndarray

    @property
    def n_users(self) -> int:
        return int(self.taste.shape[0])

    @property
    def n_items(self) -> int:
        return len(self.popularity)

    def next_item_probability(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``P(i | u)`` of the module docstring for each pair ``(users[k], items[k])``
        (indices), vectorised."""
        categories = self.taste.shape[1]
        in_category = np.bincount(self.item_category, weights=self.popularity, minlength=categories)
        category = self.item_category[items]
        session = (1 - _RANDOM_SESSION) * self.taste[users, category] + _RANDOM_SESSION / categories
        pop = self.popularity[items]
        return (1 - _GLOBAL_PICK) * session * pop / in_category[
            category
        ] + _GLOBAL_PICK * pop / self.popularity.sum()

    def save(self, path: str | Path) -> Path:
        """An ``.npz`` of the four arrays (no pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            np.savez(
                handle,
                item_category=self.item_category,
                popularity=self.popularity,
                taste=self.taste,
                activity=self.activity,
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Tastes:
        try:
            with np.load(Path(path), allow_pickle=False) as saved:
                return cls(
                    *(
                        np.asarray(saved[name])
                        for name in ("item_category", "popularity", "taste", "activity")
                    )
                )
        except (OSError, KeyError, ValueError) as error:
            raise RecforgeError(f"{path}: not a tastes file written by recforge generate ({error})") from None


def tastes_path(events_path: str | Path) -> Path:
    """Where :func:`write_events`'s caller keeps the tastes of a generated file: beside it,
    ``events.csv.gz`` -> ``events.tastes.npz``."""
    path = Path(events_path)
    stem = path.name.removesuffix(".gz")
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    return path.with_name(f"{stem}.tastes.npz")


def generate_events(
    users: int = 10_000,
    items: int = 2_000,
    events: int = 1_000_000,
    days: float = 90.0,
    seed: int = 0,
    categories: int | None = None,
) -> pa.Table:
    """Synthetic events (the columns of :data:`EVENT_SCHEMA` up to ``timestamp``: they follow
    no recommendation), sorted by time; see the module docstring."""
    return generate_with_tastes(users, items, events, days, seed, categories)[0]


def generate_with_tastes(
    users: int = 10_000,
    items: int = 2_000,
    events: int = 1_000_000,
    days: float = 90.0,
    seed: int = 0,
    categories: int | None = None,
) -> tuple[pa.Table, Tastes]:
    """:func:`generate_events` and the :class:`Tastes` they were drawn from."""
    categories = default_categories(items) if categories is None else categories
    for name, value, low in (("users", users, 1), ("items", items, 1), ("events", events, 0)):
        if int(value) != value or value < low:
            raise RecforgeError(f"{name} must be an integer >= {low}, got {value}")
    if not days > 0:
        raise RecforgeError(f"days must be positive, got {days}")
    if not 1 <= categories <= items:
        raise RecforgeError(f"categories must be between 1 and items ({items}), got {categories}")
    rng = np.random.default_rng(seed)

    item_category, popularity = _layout(rng, items, categories)
    activity = rng.lognormal(0.0, 1.0, users)
    taste = rng.gamma(_TASTE, size=(users, categories)) + 1e-12
    taste /= taste.sum(axis=1, keepdims=True)

    per_user = rng.multinomial(events, activity / activity.sum())
    user = np.repeat(np.arange(users, dtype=np.int64), per_user)
    first_of_user = np.zeros(events, dtype=bool)
    first_of_user[np.cumsum(per_user)[per_user > 0] - per_user[per_user > 0]] = True
    new_session = first_of_user | (rng.random(events) < 1.0 / _SESSION_LENGTH)
    session = np.cumsum(new_session) - 1
    session_user = user[new_session]
    n_sessions = len(session_user)

    session_category = _draw_rows(taste, session_user, rng)
    wander = rng.random(n_sessions) < _RANDOM_SESSION
    session_category[wander] = rng.integers(0, categories, int(wander.sum()))
    item = _draw_in_groups(item_category, popularity, session_category[session], rng)
    anywhere = rng.random(events) < _GLOBAL_PICK
    item[anywhere] = _draw(popularity, int(anywhere.sum()), rng)

    shares = np.array(list(EVENT_TYPE_SHARES.values()))
    event_type = np.searchsorted(np.cumsum(shares), rng.random(events) * shares.sum()).astype(np.int32)

    span = days * 86_400.0
    session_start = rng.random(n_sessions) * span
    gap = 5.0 + rng.exponential(45.0, events)
    gap[new_session] = 0.0
    elapsed = np.cumsum(gap)
    within = elapsed - elapsed[np.flatnonzero(new_session)][session]
    seconds = np.minimum(session_start[session] + within, span - 1.0).astype(np.int64)

    order = _stable_order(seconds)
    tag = _tag(users, items, events, days, seed, categories)
    start_us = int(START.timestamp()) * 1_000_000
    table = pa.table(
        {
            "event_id": pc.binary_join_element_wise(
                pa.scalar(f"e{tag}-", pa.large_string()),
                pa.array(np.arange(events)).cast(pa.large_string()),
                pa.scalar("", pa.large_string()),
            ),
            "user_id": _names("u", users, user[order]),
            "item_id": _names("i", items, item[order]),
            "event_type": pc.take(pa.array(list(EVENT_TYPE_SHARES), pa.large_string()), event_type[order]),
            "value": pa.array(np.ones(events)),
            "timestamp": pa.array(seconds[order] * 1_000_000 + start_us).cast(pa.timestamp("us", tz="UTC")),
        },
        schema=_GENERATED,
    )
    return table, Tastes(item_category, popularity, taste, activity)


def item_layout(items: int, seed: int = 0, categories: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(category index, popularity weight)`` of each item, as :func:`generate_events` draws
    them for the same ``items``, ``seed`` and ``categories`` (what a catalog of the generated
    items needs to agree with the events)."""
    categories = default_categories(items) if categories is None else categories
    return _layout(np.random.default_rng(seed), items, categories)


def _layout(rng: np.random.Generator, items: int, categories: int) -> tuple[np.ndarray, np.ndarray]:
    """The first two draws of a generation: each item's category and popularity weight."""
    item_category = rng.permutation(np.arange(items) % categories)
    popularity = (rng.permutation(items) + 1.0) ** -_ZIPF
    return item_category, popularity


def write_events(table: pa.Table, path: str | Path, batch_rows: int = 2_000_000) -> Path:
    """Write generated events by extension: ``.csv``, ``.jsonl`` or ``.parquet``, each optionally
    ``.gz``. Text is assembled column-wise without quoting or escaping, which the generator's
    plain ASCII ids never need; timestamps are ISO 8601 UTC seconds (``2024-01-01T00:00:05Z``).
    """
    path = Path(path)
    name = path.name.lower()
    gz = name.endswith(".gz")
    suffix = Path(name.removesuffix(".gz")).suffix
    if suffix not in (".csv", ".jsonl", ".parquet"):
        raise RecforgeError(f"{path}: unknown extension; use .csv, .jsonl or .parquet (optionally .gz)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.output_stream(str(path), compression="gzip" if gz else None) as out:
        if suffix == ".parquet":
            pq.write_table(table, out, compression="zstd" if not gz else "none")
            return path
        if suffix == ".csv":
            out.write(",".join(table.column_names).encode() + b"\n")
        for start in range(0, table.num_rows, batch_rows):
            for buffer in _text_lines(table.slice(start, batch_rows), csv=suffix == ".csv"):
                out.write(buffer)
    return path


# helpers ---------------------------------------------------------------------------------------
def _draw(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    cumulative = np.cumsum(weights)
    index = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
    return np.minimum(index, len(weights) - 1).astype(np.int64)


def _draw_rows(probabilities: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One column per entry of ``rows``, drawn from that row of ``probabilities`` (rows sum to 1):
    row ``r``'s cumulative probabilities shifted by ``r`` make one sorted array to search."""
    width = probabilities.shape[1]
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative[:, -1] = 1.0
    flat = (cumulative + np.arange(len(probabilities))[:, None]).ravel()
    index = np.searchsorted(flat, rows + rng.random(len(rows)), side="right")
    return np.clip(index - rows * width, 0, width - 1)


def _draw_in_groups(
    group: np.ndarray, weights: np.ndarray, wanted: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """For each entry of ``wanted`` (a group), a member of that group drawn by ``weights``."""
    order = np.argsort(group, kind="stable")
    sizes = np.bincount(group, minlength=int(group.max()) + 1)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    w = weights[order]
    cumulative = np.cumsum(w)
    before = np.concatenate([[0.0], cumulative])[starts]
    within = (cumulative - np.repeat(before, sizes)) / np.repeat(
        cumulative[starts + sizes - 1] - before, sizes
    )
    within[starts + sizes - 1] = 1.0
    flat = within + np.repeat(np.arange(len(sizes)), sizes)
    position = np.searchsorted(flat, wanted + rng.random(len(wanted)), side="right")
    position = np.clip(position, starts[wanted], starts[wanted] + sizes[wanted] - 1)
    return order[position]


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for small non-negative keys, faster: sorts
    ``key << bits | index`` (unique, so any sort is stable) and keeps the index bits."""
    bits = max(len(keys) - 1, 1).bit_length()
    if not len(keys) or int(keys.max()).bit_length() + bits > 62 or keys.min() < 0:
        return np.argsort(keys, kind="stable")
    packed = np.sort((keys << bits) | np.arange(len(keys), dtype=np.int64))
    return packed & ((1 << bits) - 1)


def _names(prefix: str, count: int, index: np.ndarray) -> pa.Array:
    names = pc.binary_join_element_wise(
        pa.scalar(prefix, pa.large_string()),
        pa.array(np.arange(count)).cast(pa.large_string()),
        pa.scalar("", pa.large_string()),
    )
    return pc.take(names, index)


def _tag(*parameters: object) -> str:
    return hashlib.sha256(repr(parameters).encode()).hexdigest()[:10]


def _iso_seconds(timestamps: pa.ChunkedArray | pa.Array) -> pa.Array:
    """``2024-01-01T00:00:05Z`` for each timestamp (to the second), built as fixed-width bytes
    with Hinnant's days-to-civil-date arithmetic (vectorised; NumPy's formatter is far slower)."""
    seconds = np.asarray(timestamps.cast(pa.timestamp("s", tz="UTC")).cast(pa.int64()).to_numpy())
    days, second = np.divmod(seconds, 86_400)
    z = days + 719_468
    era = np.floor_divide(z, 146_097)
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    n = len(seconds)
    text = np.empty((20, n), dtype=np.uint8)  # one row per character: contiguous writes
    second = second.astype(np.int32)
    fields: list[tuple[int, int, np.ndarray]] = [
        (0, 4, year.astype(np.int32)),
        (5, 2, month.astype(np.int32)),
        (8, 2, day.astype(np.int32)),
        (11, 2, second // 3600),
        (14, 2, second // 60 % 60),
        (17, 2, second % 60),
    ]
    for start, width, value in fields:
        for k in range(width):
            text[start + k] = 48 + value // 10 ** (width - 1 - k) % 10
    for position, char in ((4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":"), (19, "Z")):
        text[position] = ord(char)
    offsets = np.arange(0, 20 * (n + 1), 20, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.T.tobytes()))


def _text_lines(batch: pa.Table, csv: bool) -> list[pa.Buffer]:
    """One CSV line or JSON object per row, joined column-wise."""
    parts: list[pa.Array | pa.ChunkedArray | pa.Scalar] = []
    for j, name in enumerate(batch.column_names):
        column = batch.column(name)
        text = _iso_seconds(column) if name == "timestamp" else column.cast(pa.large_string())
        if csv:
            parts += [pa.scalar("," if j else "", pa.large_string()), text]
            continue
        quote = "" if name == "value" else '"'
        parts += [pa.scalar(("," if j else "{") + f'"{name}":{quote}', pa.large_string()), text]
        if quote:
            parts.append(pa.scalar(quote, pa.large_string()))
    parts.append(pa.scalar("\n" if csv else "}\n", pa.large_string()))
    lines = pc.binary_join_element_wise(*parts, pa.scalar("", pa.large_string()))
    chunks = lines.chunks if isinstance(lines, pa.ChunkedArray) else [lines]
    buffers = []
    for chunk in chunks:
        if len(chunk):
            offsets = np.frombuffer(chunk.buffers()[1], np.int64)[
                chunk.offset : chunk.offset + len(chunk) + 1
            ]
            first, last = int(offsets[0]), int(offsets[-1])
            buffers.append(chunk.buffers()[2].slice(first, last - first))
    return buffers
