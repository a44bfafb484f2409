"""Event weighting: from raw events to the implicit-feedback strength ``r_ui``.

For user ``u`` and item ``i`` with events ``e`` (type ``t_e``, value ``v_e``, time ``s_e``)::

    r_ui = sum_e  w(t_e) * v_e * 0.5 ** (age_e / half_life),     age_e = max(0, T_ref - s_e)

``w`` is the per-event-type weight, ``half_life`` the time for an event's contribution to halve
(``None`` or infinite: no decay), ``T_ref`` the reference time (by default the newest event, so
the freshest event counts fully). Events newer than ``T_ref`` count as age 0, never more than
their weight. The preference is ``p_ui = 1 if r_ui > 0`` and the confidence used by implicit ALS
is ``c_ui = 1 + alpha * r_ui`` (Hu, Koren, Volinsky 2008; Spark's convention).

Pure functions over NumPy arrays; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "DEFAULT_WEIGHTS",
    "confidence",
    "decay",
    "event_strength",
    "type_weights",
]

#: Default weights: views are weak signals, purchases strong (the marketplace's ordering).
DEFAULT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "like": 4.0,
    "cart": 8.0,
    "purchase": 16.0,
    "rating": 1.0,
}

SECONDS_PER_DAY = 86_400.0


def decay(age_seconds: np.ndarray, half_life_seconds: float | None) -> np.ndarray:
    """``0.5 ** (max(age, 0) / half_life)`` as float64; ones when ``half_life`` is ``None``/inf.

    >>> decay(np.array([0.0, 10.0, 20.0]), 10.0).tolist()
    [1.0, 0.5, 0.25]
    """
    age = np.maximum(np.asarray(age_seconds, dtype=np.float64), 0.0)
    if half_life_seconds is None or not np.isfinite(half_life_seconds):
        return np.ones_like(age)
    if half_life_seconds <= 0:
        raise ValueError(f"half_life must be positive, got {half_life_seconds}")
    return np.exp2(-age / float(half_life_seconds))


def type_weights(
    type_codes: np.ndarray, type_names: Sequence[str], weights: Mapping[str, float]
) -> np.ndarray:
    """Per-event weight from dictionary-encoded event types.

    ``type_codes[j]`` indexes ``type_names``; a type missing from ``weights`` weighs 1.0.
    """
    table = np.array([float(weights.get(name, 1.0)) for name in type_names], dtype=np.float64)
    if len(table) == 0:
        return np.zeros(len(type_codes), dtype=np.float64)
    return table[np.asarray(type_codes)]


def event_strength(
    weight: np.ndarray,
    value: np.ndarray,
    timestamp_seconds: np.ndarray,
    reference_seconds: float,
    half_life_seconds: float | None,
) -> np.ndarray:
    """One event's contribution ``w * v * 0.5 ** (age / half_life)`` (float64)."""
    age = float(reference_seconds) - np.asarray(timestamp_seconds, dtype=np.float64)
    return np.asarray(weight, np.float64) * np.asarray(value, np.float64) * decay(age, half_life_seconds)


def confidence(r: np.ndarray, alpha: float) -> np.ndarray:
    """Implicit-ALS confidence ``c = 1 + alpha * r`` (same dtype as ``r``)."""
    r = np.asarray(r)
    return (1 + alpha * r).astype(r.dtype, copy=False)
