"""Build: the events in the store (optionally a time window) become :class:`Interactions`.

``r_ui = sum weight(type) * value * 0.5 ** (age / half_life)`` with the weights, half-life and
reference time of ``[weighting]`` in the config (see :mod:`recforge.weighting`), plus the
latest-rating view. The result is saved under ``<home>/interactions``, a symbolic link to
``<home>/interactions.builds/<build>/`` that is replaced atomically, so a reader loads either
the previous build or the new one, never a mix; older builds are deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from recforge._files import fsync_path
from recforge._time import iso
from recforge.config import Config
from recforge.data.interactions import Interactions
from recforge.data.schema import CONTENT_COLUMNS
from recforge.data.store import EventStore
from recforge.errors import RecforgeError

__all__ = ["build_interactions", "load_interactions", "save_interactions"]


def build_interactions(
    store: EventStore,
    config: Config,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Interactions:
    """``Interactions`` from the events with ``start <= timestamp < end``.

    ``info`` records the window (``window_start``/``window_end``, ISO 8601 or ``None``).
    """
    events = store.scan(CONTENT_COLUMNS, start=start, end=end)
    if events.num_rows == 0:
        window = "" if start is None and end is None else " in the given window"
        raise RecforgeError(f"no events{window} in {store.root}; ingest some first (recforge ingest FILE)")
    interactions = Interactions.from_events(events, config.weighting.value())
    interactions.info["window_start"] = iso(start)
    interactions.info["window_end"] = iso(end)
    return interactions


def save_interactions(interactions: Interactions, home: str | Path) -> Path:
    """Save as ``<home>/interactions`` (atomically replacing an earlier build); returns it."""
    home = Path(home)
    builds = home / "interactions.builds"
    builds.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
    interactions.save(builds / name)
    link = home / "interactions"
    if link.exists() and not link.is_symlink():
        raise RecforgeError(f"{link} exists and is not a recforge build link; move it away")
    tmp = home / f".interactions.{uuid.uuid4().hex}"
    os.symlink(Path("interactions.builds") / name, tmp)
    os.replace(tmp, link)
    fsync_path(home, directory=True)
    older = sorted(p for p in builds.iterdir() if p.name != name)
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
