"""Build: the events in the store (optionally a time window) become :class:`Interactions`.

``r_ui = sum weight(type) * value * 0.5 ** (age / half_life)`` with the weights and half-life of
``[weighting]`` in the config (see :mod:`recforge.weighting`), plus the latest-rating view.

**As of.** A build is made *as of* a time: now, or ``recforge build --as-of T``. Ages are
measured from it (unless ``[weighting] reference_time`` fixes another reference), never from the
newest event, and events stamped after it are left out: the build is what was known then. Built
far after its data ends, every weight is small (``0.5 ** (age / half_life)``); older than about
126 half-lives it is below float32's range and the pair vanishes (counted in
``info["vanished"]``; a build left with nothing is an error that says to give ``--as-of``).

The result is saved under ``<home>/interactions``, a symbolic link to
``<home>/interactions.builds/<build>/`` that is replaced atomically, so a reader loads either
the previous build or the new one, never a mix; older builds are deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recforge._files import commit_dir, fsync_path, temporary_dir
from recforge._time import iso, parse_time
from recforge.config import Config
from recforge.data.interactions import Interactions
from recforge.data.schema import CONTENT_COLUMNS
from recforge.data.store import EventStore
from recforge.errors import RecforgeError

__all__ = ["age_days", "build_interactions", "decayed_away", "load_interactions", "save_interactions"]


def build_interactions(
    store: EventStore,
    config: Config,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    as_of: datetime | None = None,
) -> Interactions:
    """``Interactions`` from the events with ``start <= timestamp < end`` and not after
    ``as_of`` (default: now), weighted as of ``as_of`` (see the module doc). Load-test events
    (``[data] loadtest_prefix``) and erased ones are never read.

    ``info`` records the window (``window_start``/``window_end``, ISO 8601 or ``None``),
    ``as_of``, and ``read_at``: when the events were read (a deletion after it is not reflected;
    servers honour it for this build's models: :mod:`recforge.serving.erasure`).
    """
    read_at = datetime.now(UTC)
    as_of = _utc(as_of) if as_of is not None else read_at
    upto = as_of + timedelta(microseconds=1)  # scan's end is exclusive; an event at as_of is in
    events = store.scan(
        CONTENT_COLUMNS,
        start=start,
        end=upto if end is None else min(_utc(end), upto),
        skip_prefix=config.data.loadtest_prefix,
    )
    if events.num_rows == 0:
        window = "" if start is None and end is None else " in the given window"
        raise RecforgeError(
            f"no events{window} up to {iso(as_of)} in {store.root}; ingest some first (recforge ingest FILE)"
        )
    weighting = config.weighting.value()
    interactions = Interactions.from_events(events, weighting, as_of=as_of)
    if interactions.nnz == 0 and interactions.info["vanished"]:
        raise decayed_away(interactions.info["last"], as_of, weighting.half_life_days)
    interactions.info["window_start"] = iso(start)
    interactions.info["window_end"] = iso(end)
    interactions.info["read_at"] = iso(read_at)
    return interactions


def decayed_away(last: str, as_of: datetime, half_life_days: float | None) -> RecforgeError:
    """The error of a build as of ``as_of`` whose every weight decayed below float32's range, the
    newest event at ``last`` (ISO 8601)."""
    age = max(0.0, (as_of - parse_time(last)).total_seconds() / 86_400.0)
    return RecforgeError(
        f"every weight decayed to nothing as of {iso(as_of)}: the newest event ({last}) is "
        f"{age:,.0f} days older, {age / (half_life_days or 1):,.0f} half-lives; build as of the data's "
        f"end (--as-of {last}) or set [weighting] half_life_days = 0"
    )


def age_days(interactions: Interactions, as_of: datetime) -> float:
    """Days between the newest event of a build and ``as_of``."""
    last = interactions.info.get("last")
    if not last:
        return 0.0
    return max(0.0, (as_of - parse_time(last)).total_seconds() / 86_400.0)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def save_interactions(interactions: Interactions, home: str | Path) -> Path:
    """Save as ``<home>/interactions`` (atomically replacing an earlier build); returns it."""
    home = Path(home)
    builds = home / "interactions.builds"
    builds.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
    tmp = temporary_dir(builds / name)
    try:  # written whole under a hidden name (a full disk leaves nothing behind), then renamed
        interactions.save(tmp)
        commit_dir(tmp, builds / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    link = home / "interactions"
    if link.exists() and not link.is_symlink():
        raise RecforgeError(f"{link} exists and is not a recforge build link; move it away")
    pointer = home / f".interactions.{uuid.uuid4().hex}"
    os.symlink(Path("interactions.builds") / name, pointer)
    os.replace(pointer, link)
    fsync_path(home, directory=True)
    older = sorted(p for p in builds.iterdir() if p.name != name and not p.name.startswith("."))
    for old in older[:-1]:  # keep the previous build: a reader may still be loading it
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
    return link


def load_interactions(home: str | Path, mmap: bool = False) -> Interactions:
    """The current build under ``<home>/interactions``."""
    path = Path(home) / "interactions"
    if not path.exists():
        raise RecforgeError(f"no interactions built in {home}; run recforge build first")
    return Interactions.load(path, mmap=mmap)
