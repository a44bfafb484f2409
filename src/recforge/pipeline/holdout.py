"""The holdout every candidate is judged on, and the duration syntax of the commands.

A holdout is usually one global time cut (:func:`recforge.evaluation.temporal_split`): events
before it train the model, events at or after it are the future the model must predict. It is
given as a fraction of the newest events, a number of days before the newest event, or a time.
For data whose order in time means little (ratings, where each user rated in one sitting), a
per-user holdout (:func:`recforge.evaluation.random_split`, seed 0) holds out that fraction of
each user's events instead: it has no cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge._time import parse_time
from recforge.config import Config
from recforge.errors import RecforgeError
from recforge.evaluation.splits import Split, random_split, temporal_split

__all__ = ["Holdout", "holdout_from_config", "parse_duration", "parse_holdout", "split_events"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"10m"``, ``"1.5h"`` or ``"2d"`` (must be positive)."""
    match = _DURATION.match(str(text).lower())
    if not match:
        raise RecforgeError(f"{text!r} is not a duration; use e.g. 30s, 10m, 2h or 1d")
    seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds <= 0:
        raise RecforgeError(f"the duration {text!r} must be positive")
    return seconds


@dataclass(frozen=True)
class Holdout:
    """Exactly one of ``fraction`` (newest share of events), ``days`` (before the newest event),
    ``at`` (a cut time) or ``per_user`` (a share of each user's events, at random)."""

    fraction: float | None = None
    days: float | None = None
    at: datetime | None = None
    per_user: float | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.fraction, self.days, self.at, self.per_user) if v is not None]
        if len(given) != 1:
            raise ValueError("a holdout needs exactly one of fraction, days, at or per_user")
        if self.fraction is not None and not 0.0 < self.fraction < 1.0:
            raise RecforgeError(f"the holdout fraction must lie in (0, 1), got {self.fraction}")
        if self.per_user is not None and not 0.0 < self.per_user < 1.0:
            raise RecforgeError(f"the per-user holdout fraction must lie in (0, 1), got {self.per_user}")
        if self.days is not None and not self.days > 0:
            raise RecforgeError(f"the holdout days must be positive, got {self.days}")

    def describe(self) -> dict[str, Any]:
        if self.fraction is not None:
            return {"holdout": "fraction", "fraction": self.fraction}
        if self.days is not None:
            return {"holdout": "days", "days": self.days}
        if self.per_user is not None:
            return {"holdout": "per_user", "per_user": self.per_user}
        assert self.at is not None
        return {"holdout": "at", "at": self.at.isoformat().replace("+00:00", "Z")}


def parse_holdout(text: str) -> Holdout:
    """``"0.1"`` or ``"10%"`` (fraction of the newest events), ``"7d"``/``"12h"`` (before the
    newest event), or an ISO 8601 time (the cut itself)."""
    text = str(text).strip()
    if text.endswith("%"):
        return Holdout(fraction=_number(text[:-1], text) / 100.0)
    if _DURATION.match(text.lower()):
        if text[-1].lower() in _UNITS:
            return Holdout(days=parse_duration(text) / 86400.0)
        return Holdout(fraction=_number(text, text))
    return Holdout(at=parse_time(text))


def holdout_from_config(config: Config) -> Holdout:
    """``[pipeline] holdout_per_user`` when positive, else ``holdout_days`` when positive, else
    ``holdout_fraction``."""
    settings = config.pipeline
    if settings.holdout_per_user > 0:
        return Holdout(per_user=settings.holdout_per_user)
    if settings.holdout_days > 0:
        return Holdout(days=settings.holdout_days)
    return Holdout(fraction=settings.holdout_fraction)


def split_events(events: pa.Table, holdout: Holdout, config: Config) -> Split:
    """The split of ``events`` by the holdout (at its cut, or per user), weighted with
    ``[weighting]``'s weights and half-life as of the end of the train part (as the splits do).

    A holdout that leaves no training events or no test events is an error saying so.
    """
    if events.num_rows == 0:
        raise RecforgeError("no events to split; ingest some first")
    weighting = replace(config.weighting.value(), reference_time=None)
    if holdout.per_user is not None:
        split = random_split(events, holdout.per_user, random_state=0, weighting=weighting)
        if split.test.nnz == 0:
            raise RecforgeError(
                f"a per-user holdout of {holdout.per_user:g} leaves nothing to evaluate: too few events "
                "per user"
            )
        return split
    if holdout.days is not None:
        newest = pc.max(events.column("timestamp")).as_py()
        at: datetime | None = newest - timedelta(days=holdout.days)
    else:
        at = holdout.at
    split = temporal_split(events, at=at, test_fraction=holdout.fraction, weighting=weighting)
    n_test = int(np.count_nonzero(split.test_mask))
    if n_test == 0 or n_test == len(split.test_mask):
        side = "no events after" if n_test == 0 else "no events before"
        raise RecforgeError(f"the holdout cut {split.params['cut']} leaves {side} it; choose another holdout")
    return split


def _number(text: str, original: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise RecforgeError(f"{original!r} is not a holdout; use e.g. 0.1, 10%, 7d or 2024-03-01") from None
