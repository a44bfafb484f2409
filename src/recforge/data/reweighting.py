"""``Reweighter``: the events of one build, held ready to rebuild ``r_ui`` under other weights.

Tuning treats the event-type weights and the half-life as hyperparameters (preprocessing is
part of the model), so every trial needs the interactions rebuilt from the same events::

    r_ui = sum_e  w(t_e) * v_e * 0.5 ** (age_e / half_life),     age_e = max(0, T_ref - s_e)

(:mod:`recforge.weighting`). Everything that does not depend on ``w`` or ``half_life`` is done
once: the vocabulary lookups, the grouping of events by (user, item) pair in CSR order, the
event types, values and ages, the ratings view. A rebuild is then one vectorised pass over the
events (their strengths) and one segmented sum (``numpy.add.reduceat``) into the CSR data of the
fixed pair pattern. The result equals :meth:`Interactions.from_events` on the same events with
the same vocabularies and reference time (up to the rounding of the float64 sums).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recforge.data.interactions import Interactions, _float_column
from recforge.data.schema import timestamps_us, to_us
from recforge.data.vocabulary import Vocabulary
from recforge.weighting import DEFAULT_WEIGHTS, SECONDS_PER_DAY, event_strength, type_weights

__all__ = ["Reweighter"]


class Reweighter:
    """Rebuild :class:`Interactions` from ``events`` for any weights and half-life.

    ``users`` / ``items`` fix the vocabularies (events on other ids are dropped, as
    :meth:`Interactions.from_events` does); by default they are the events' own.
    ``reference_time`` is ``T_ref`` (default: the newest event).
    """

    def __init__(
        self,
        events: pa.Table,
        *,
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
        reference_time: datetime | None = None,
    ) -> None:
        # the weight-independent parts (vocabularies, ratings view, info) from one plain build
        self._base = Interactions.from_events(
            events, weights={}, half_life_days=None, reference_time=reference_time, users=users, items=items
        )
        n_items = self._base.n_items
        u = self._base.users.lookup(events.column("user_id"))
        i = self._base.items.lookup(events.column("item_id"))
        known = (u >= 0) & (i >= 0)
        keys = u[known].astype(np.int64) * n_items + i[known]
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
        pairs = keys[first]
        #: where each pair's events start in the sorted event arrays (``reduceat`` offsets)
        self._starts = first
        self._rows = (pairs // max(n_items, 1)).astype(np.int64)
        self._cols = (pairs % max(n_items, 1)).astype(np.int32)

        types = pc.dictionary_encode(events.column("event_type")).combine_chunks()
        self._type_names = [str(s) for s in types.dictionary.to_pylist()]
        self._type_codes = types.indices.to_numpy(zero_copy_only=False)[known][order]
        self._values = _float_column(events.column("value"))[known][order]
        ts_us = timestamps_us(events.column("timestamp"))
        self._seconds = ts_us[known][order] / 1e6
        if reference_time is not None:
            self._reference = to_us(reference_time) / 1e6
        else:
            self._reference = int(ts_us.max()) / 1e6 if len(ts_us) else 0.0
        self._span_days = float(np.ptp(ts_us)) / 1e6 / SECONDS_PER_DAY if len(ts_us) else 0.0
        counts = np.bincount(self._type_codes, minlength=len(self._type_names))
        #: event types in the events, the most frequent first
        self.event_types: list[str] = [self._type_names[c] for c in np.argsort(-counts, kind="stable")]

    @property
    def users(self) -> Vocabulary:
        return self._base.users

    @property
    def items(self) -> Vocabulary:
        return self._base.items

    @property
    def span_days(self) -> float:
        """Days between the oldest and the newest event."""
        return self._span_days

    def build(
        self, weights: Mapping[str, float] | None = None, half_life_days: float | None = 30.0
    ) -> Interactions:
        """The interactions under ``weights`` (default :data:`DEFAULT_WEIGHTS`; a type not
        listed weighs 1.0) and ``half_life_days`` (``None`` or 0: no decay)."""
        weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        if half_life_days is not None and half_life_days < 0:
            raise ValueError(f"half_life_days must be >= 0, got {half_life_days}")
        half_life = float(half_life_days) * SECONDS_PER_DAY if half_life_days else None
        strength = event_strength(
            type_weights(self._type_codes, self._type_names, weights),
            self._values,
            self._seconds,
            self._reference,
            half_life,
        )
        sums = np.add.reduceat(strength, self._starts) if len(strength) else np.zeros(0)
        data = sums.astype(np.float32)
        keep = data > 0  # as from_events: only positive r_ui are stored
        shape = self._base.shape
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(self._rows[keep], minlength=shape[0]), out=indptr[1:])
        matrix = sp.csr_matrix((data[keep], self._cols[keep], indptr), shape=shape)
        matrix.has_sorted_indices = True
        info = dict(self._base.info, half_life_days=float(half_life_days or 0.0), weights=weights)
        return Interactions(matrix, self.users, self.items, self._base.ratings, info)
