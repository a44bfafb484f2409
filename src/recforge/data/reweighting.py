"""``Reweighter``: the events of one build, held ready to rebuild ``r_ui`` under another weighting.

Tuning treats the event-type weights and the half-life as hyperparameters (preprocessing is
part of the model), so every trial needs the interactions rebuilt from the same events::

    r_ui = sum_e  w(t_e) * v_e * 0.5 ** (age_e / half_life),     age_e = max(0, T_ref - s_e)

(:mod:`recforge.weighting`). Everything that does not depend on the
:class:`~recforge.weighting.Weighting` is done once: the vocabulary lookups, the grouping of
events by (user, item) pair in CSR order, the event types, values and times, the ratings view. A
rebuild is then one vectorised pass over the events (:meth:`Weighting.strength
<recforge.weighting.Weighting.strength>`) and one segmented sum (``numpy.add.reduceat``) into the
CSR data of the fixed pair pattern. The result equals :meth:`Interactions.from_events` on the
same events with the same vocabularies and weighting (up to the rounding of the float64 sums).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recforge._time import iso
from recforge.data.interactions import Interactions, _float_column
from recforge.data.schema import timestamps_us
from recforge.data.vocabulary import Vocabulary
from recforge.weighting import SECONDS_PER_DAY, Weighting

__all__ = ["Reweighter"]


class Reweighter:
    """Rebuild :class:`Interactions` from ``events`` for any :class:`Weighting`.

    ``users`` / ``items`` fix the vocabularies (events on other ids are dropped, as
    :meth:`Interactions.from_events` does); by default they are the events' own. ``as_of`` is
    the time ages are measured from when a weighting sets none (:meth:`Weighting.as_of`); by
    default the newest of ``events`` (the training events), as the per-user splits do (give a
    temporal split's cut).
    """

    def __init__(
        self,
        events: pa.Table,
        *,
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
        as_of: datetime | None = None,
    ) -> None:
        # the weight-independent parts (vocabularies, ratings view, info) from one plain build
        self._base = Interactions.from_events(
            events, Weighting(weights={}, half_life_days=None), users=users, items=items
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
        self._timestamps_us = ts_us[known][order]
        if as_of is None and len(ts_us):  # the newest event, dropped ones included
            as_of = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=int(ts_us.max()))
        self.as_of = as_of
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

    def build(self, weighting: Weighting | None = None) -> Interactions:
        """The interactions under ``weighting`` (default: ``Weighting()``)."""
        applied = (Weighting() if weighting is None else weighting).as_of(self.as_of)
        strength = applied.strength(self._type_codes, self._type_names, self._values, self._timestamps_us)
        sums = np.add.reduceat(strength, self._starts) if len(strength) else np.zeros(0)
        data = sums.astype(np.float32)
        keep = data > 0  # as from_events: only positive r_ui are stored
        shape = self._base.shape
        indptr = np.zeros(shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(self._rows[keep], minlength=shape[0]), out=indptr[1:])
        matrix = sp.csr_matrix((data[keep], self._cols[keep], indptr), shape=shape)
        matrix.has_sorted_indices = True
        info = dict(self._base.info, as_of=iso(self.as_of), **applied.describe())
        return Interactions(matrix, self.users, self.items, self._base.ratings, info)
