"""Event weighting: from raw events to the implicit-feedback strength ``r_ui``.

For user ``u`` and item ``i`` with events ``e`` (type ``t_e``, value ``v_e``, time ``s_e``)::

    r_ui = sum_e  w(t_e) * v_e * 0.5 ** (age_e / half_life),     age_e = max(0, T_ref - s_e)

``w`` is the per-event-type weight, ``half_life`` the time for an event's contribution to halve
(``None``: no decay), ``T_ref`` the reference time: the *as-of time* of the build (now, or
``recforge build --as-of``; a split's is the end of its training part), never the newest event, so
one event stamped in the future cannot decay every other weight away. Events newer than
``T_ref`` count as age 0, never more than their weight.
The preference is ``p_ui = 1 if r_ui > 0`` and the confidence used by implicit ALS is
``c_ui = 1 + alpha * r_ui`` (Hu, Koren, Volinsky 2008; Spark's convention).

One :class:`Weighting` value holds ``w``, ``half_life`` and ``T_ref``; the local build
(:meth:`recforge.data.Interactions.from_events`), the tuner's rebuilds
(:class:`recforge.data.reweighting.Reweighter`) and Spark's column expression
(:func:`recforge.spark.build.strength_column`) all take it. ``None`` is the only spelling of "no
decay" in code; the config file's ``half_life_days = 0`` is translated where the config is read
(:meth:`recforge.config.WeightingConfig.value`).

Pure: NumPy arrays and datetimes in, arrays out; no I/O.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_HALF_LIFE_DAYS",
    "DEFAULT_WEIGHTS",
    "SECONDS_PER_DAY",
    "Weighting",
    "decay",
]

#: Default weights: views are weak signals, purchases strong (the marketplace's ordering).
DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "view": 1.0,
        "like": 4.0,
        "cart": 8.0,
        "purchase": 16.0,
        "rating": 1.0,
    }
)

#: Default half-life of an event's contribution, in days: a month.
DEFAULT_HALF_LIFE_DAYS = 30.0

SECONDS_PER_DAY = 86_400.0

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def decay(age_seconds: np.ndarray, half_life_seconds: float | None) -> np.ndarray:
    """``0.5 ** (max(age, 0) / half_life)`` as float64; ones when ``half_life`` is ``None``.

    >>> decay(np.array([0.0, 10.0, 20.0]), 10.0).tolist()
    [1.0, 0.5, 0.25]
    """
    age = np.maximum(np.asarray(age_seconds, dtype=np.float64), 0.0)
    if half_life_seconds is None:
        return np.ones_like(age)
    if not (math.isfinite(half_life_seconds) and half_life_seconds > 0):
        raise ValueError(f"half_life must be positive and finite (None: no decay), got {half_life_seconds}")
    return np.exp2(-age / float(half_life_seconds))


@dataclass(frozen=True)
class Weighting:
    """How events become ``r_ui`` (see the module doc): event-type ``weights``, the half-life in
    days (``None``: no decay), and the reference time ages are measured from.

    ``weights`` maps event type to weight (default :data:`DEFAULT_WEIGHTS`); a type not listed
    weighs 1.0. ``half_life_days`` must be positive and finite, or ``None``; 0 and infinity are
    refused (``None`` is the one spelling of "no decay"). ``reference_time`` is ``T_ref`` when
    set in the configuration; ``None`` means the as-of time of whatever applies the weighting
    (:meth:`as_of` fixes it). A naive datetime is taken as UTC.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    half_life_days: float | None = DEFAULT_HALF_LIFE_DAYS
    reference_time: datetime | None = None

    def __post_init__(self) -> None:
        weights: dict[str, float] = {}
        for name, weight in dict(self.weights).items():
            if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
                raise ValueError(f"the weight of event type {name!r} must be a finite number, got {weight!r}")
            weights[str(name)] = float(weight)
        object.__setattr__(self, "weights", MappingProxyType(weights))
        half_life = self.half_life_days
        if half_life is not None:
            if (
                isinstance(half_life, bool)
                or not isinstance(half_life, numbers.Real)
                or not (math.isfinite(half_life) and half_life > 0)
            ):
                raise ValueError(
                    f"half_life_days must be a positive, finite number of days, or None for no decay; "
                    f"got {half_life!r}"
                )
            object.__setattr__(self, "half_life_days", float(half_life))
        when = self.reference_time
        if when is not None:
            if not isinstance(when, datetime):
                raise ValueError(f"reference_time must be a datetime or None, got {when!r}")
            when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
            object.__setattr__(self, "reference_time", when)

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.weights.items())), self.half_life_days, self.reference_time))

    def __reduce__(self) -> tuple[Any, ...]:  # the weights' read-only view does not pickle
        return (type(self), (dict(self.weights), self.half_life_days, self.reference_time))

    # the reference time -----------------------------------------------------------------------
    def as_of(self, when: datetime | None) -> Weighting:
        """This weighting with its reference time fixed: ``reference_time`` when set, else the
        as-of time ``when`` (``None`` leaves it unset). The one place a build's as-of time becomes
        the decay reference: the local build, the splits, the tuner's rebuilds and Spark's
        expression all come through here."""
        if self.reference_time is not None or when is None:
            return self
        return replace(self, reference_time=when)

    @property
    def reference_us(self) -> int | None:
        """``reference_time`` in microseconds since the epoch (exact), or ``None``."""
        if self.reference_time is None:
            return None
        return (self.reference_time - _EPOCH) // _MICROSECOND

    # the maths ----------------------------------------------------------------------------------
    def type_weights(self, type_codes: np.ndarray, type_names: Sequence[str]) -> np.ndarray:
        """Per-event weight (float64) from dictionary-encoded event types: ``type_codes[j]``
        indexes ``type_names``; a type missing from ``weights`` weighs 1.0."""
        table = np.array([self.weights.get(name, 1.0) for name in type_names], dtype=np.float64)
        if len(table) == 0:
            return np.zeros(len(type_codes), dtype=np.float64)
        return table[np.asarray(type_codes)]

    def strength(
        self,
        type_codes: np.ndarray,
        type_names: Sequence[str],
        values: np.ndarray,
        timestamps_us: np.ndarray,
    ) -> np.ndarray:
        """Each event's contribution ``w(t) * v * 0.5 ** (age / half_life)`` (float64).

        Types are dictionary-encoded (see :meth:`type_weights`); ``timestamps_us`` are
        microseconds since the epoch. With decay, ages are measured from ``reference_time``,
        which must then be set (see :meth:`as_of`).
        """
        strength = self.type_weights(type_codes, type_names) * np.asarray(values, dtype=np.float64)
        if self.half_life_days is None:
            return strength
        reference_us = self.reference_us
        if reference_us is None:
            if len(strength) == 0:
                return strength
            raise ValueError("a decaying Weighting needs a reference time: the as-of time, see .as_of(when)")
        age = reference_us / 1e6 - np.asarray(timestamps_us, dtype=np.int64) / 1e6
        return strength * decay(age, self.half_life_days * SECONDS_PER_DAY)

    # description --------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What :class:`~recforge.data.Interactions` records in ``info``: ``reference_time``
        (ISO 8601 UTC, or ``None``), ``half_life_days`` (``0.0`` for no decay, as builds have
        always recorded it) and ``weights``."""
        when = self.reference_time
        return {
            "reference_time": None if when is None else when.isoformat().replace("+00:00", "Z"),
            "half_life_days": 0.0 if self.half_life_days is None else self.half_life_days,
            "weights": dict(self.weights),
        }

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> Weighting:
        """The weighting :meth:`describe` (or a build's ``info``) describes."""
        when = description.get("reference_time")
        return cls(
            weights=description["weights"],
            half_life_days=description["half_life_days"] or None,
            reference_time=datetime.fromisoformat(when) if when else None,
        )
