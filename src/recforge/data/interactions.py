"""``Interactions``: the user x item matrix every model trains on, with its vocabularies.

``matrix[u, i] = r_ui`` is the implicit-feedback strength (see :mod:`recforge.weighting`):
the sum over u's events on i of ``weight(type) * value * 0.5 ** (age / half_life)``, float32,
CSR with sorted column indices and only positive entries (``p_ui = 1`` exactly where stored).
``ratings`` is the explicit view: the latest ``rating`` event's value per (user, item) pair,
or ``None`` when there are no rating events.

Building is vectorised (Arrow hashing for the vocabularies, one NumPy pass for the weights,
SciPy's COO->CSR for the sums): no Python loop over events, users or items.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recforge._time import iso, iso_from_us
from recforge.data.schema import timestamps_us
from recforge.data.vocabulary import Vocabulary
from recforge.weighting import Weighting

__all__ = ["Interactions"]

FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class Interactions:
    """A users x items CSR matrix of ``r_ui`` plus the vocabularies that name its rows and columns.

    ``info`` records how it was built: ``events`` (rows read), ``first``/``last`` event time,
    ``as_of`` and ``reference_time`` (ISO 8601), ``half_life_days``, ``weights``, ``dropped``
    (events whose user or item was not in given vocabularies) and ``vanished`` (pairs whose
    decayed ``r_ui`` is too small for float32: older than about 126 half-lives).
    """

    matrix: sp.csr_matrix
    users: Vocabulary
    items: Vocabulary
    ratings: sp.csr_matrix | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = (len(self.users), len(self.items))
        for name, m in (("matrix", self.matrix), ("ratings", self.ratings)):
            if m is None:
                continue
            if not sp.isspmatrix_csr(m) and not isinstance(m, sp.csr_array):
                raise TypeError(f"{name} must be a CSR matrix, got {type(m).__name__}")
            if m.shape != shape:
                raise ValueError(f"{name} has shape {m.shape}, vocabularies give {shape}")

    # shape --------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_items)

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def __repr__(self) -> str:
        return f"Interactions({self.n_users} users x {self.n_items} items, {self.nnz} pairs)"

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_csr(
        cls,
        matrix: sp.spmatrix | sp.sparray | np.ndarray,
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
        ratings: sp.spmatrix | None = None,
    ) -> Interactions:
        """Wrap a users x items matrix; without vocabularies, ids are ``"0" .. "n-1"``."""
        csr = _canonical(sp.csr_matrix(matrix, dtype=np.float32))
        n_users, n_items = csr.shape
        users = users if users is not None else Vocabulary.range(n_users)
        items = items if items is not None else Vocabulary.range(n_items)
        rat = (
            None if ratings is None else _canonical(sp.csr_matrix(ratings, dtype=np.float32), keep_zeros=True)
        )
        return cls(csr, users, items, rat, {"events": int(csr.nnz)})

    @classmethod
    def from_events(
        cls,
        events: pa.Table,
        weighting: Weighting | None = None,
        *,
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
        as_of: datetime | None = None,
    ) -> Interactions:
        """Aggregate an event table (the :mod:`recforge.data.schema` columns) into ``r_ui``
        under ``weighting`` (default: ``Weighting()``, see :class:`~recforge.weighting.Weighting`)
        as of ``as_of``: the time ages are measured from (:meth:`Weighting.as_of`). A decaying
        weighting needs one (or its own ``reference_time``): a build's is now or ``--as-of``
        (:func:`recforge.data.build.build_interactions`), never the newest event.

        Given ``users``/``items`` vocabularies fix the rows/columns (events on ids outside them
        are dropped and counted in ``info["dropped"]``); otherwise the vocabularies are the
        sorted distinct ids of the events. ``info`` records the weighting applied, its
        reference time resolved (:meth:`Weighting.describe`).
        """
        n_events = events.num_rows
        ts_us = timestamps_us(events.column("timestamp"))
        weighting = Weighting() if weighting is None else weighting
        applied = weighting.as_of(as_of)
        if n_events and applied.half_life_days is not None and applied.reference_time is None:
            raise ValueError(
                "a decaying weighting needs an as-of time to measure ages from: pass as_of= "
                "(a build's is now, or --as-of) or set the weighting's reference_time"
            )
        if users is None:
            users = Vocabulary.from_values(events.column("user_id"))
        if items is None:
            items = Vocabulary.from_values(events.column("item_id"))
        u = users.lookup(events.column("user_id"))
        i = items.lookup(events.column("item_id"))
        known = (u >= 0) & (i >= 0)
        dropped = int(n_events - np.count_nonzero(known))

        types = pc.dictionary_encode(events.column("event_type")).combine_chunks()
        type_codes = types.indices.to_numpy(zero_copy_only=False)
        type_names = [str(s) for s in types.dictionary.to_pylist()]
        value = _float_column(events.column("value"))

        strength = applied.strength(type_codes, type_names, value, ts_us)
        shape = (len(users), len(items))
        summed = sp.csr_matrix((strength[known], (u[known], i[known])), shape=shape, dtype=np.float64)
        summed.sum_duplicates()
        matrix = _canonical(summed.astype(np.float32))
        vanished = int(np.count_nonzero(summed.data > 0)) - matrix.nnz

        ratings = None
        if "rating" in type_names:
            is_rating = known & (type_codes == type_names.index("rating"))
            ratings = _latest(u[is_rating], i[is_rating], ts_us[is_rating], value[is_rating], shape)

        info: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "events": int(n_events),
            "dropped": dropped,
            "vanished": vanished,
            "first": iso_from_us(int(ts_us.min())) if n_events else None,
            "last": iso_from_us(int(ts_us.max())) if n_events else None,
            "as_of": iso(as_of),
            **applied.describe(),
        }
        return cls(matrix, users, items, ratings, info)

    def with_items(self, items: Vocabulary | pa.Array | Sequence[str] | np.ndarray) -> Interactions:
        """The same interactions over the item vocabulary extended by ``items`` it lacks (appended
        in sorted order, as :meth:`Vocabulary.extend` does): new items get empty columns. Returns
        ``self`` when there is nothing to add."""
        ids = items.array if isinstance(items, Vocabulary) else items
        extended = self.items.extend(ids)
        if len(extended) == self.n_items:
            return self
        shape = (self.n_users, len(extended))

        def widen(m: sp.csr_matrix) -> sp.csr_matrix:
            return sp.csr_matrix((m.data, m.indices, m.indptr), shape=shape)

        ratings = None if self.ratings is None else widen(self.ratings)
        return Interactions(widen(self.matrix), self.users, extended, ratings, dict(self.info))

    # persistence --------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write to directory ``path``: CSR arrays as ``.npy``, vocabularies, ``interactions.json``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        _save_csr(path, "matrix", self.matrix)
        if self.ratings is not None:
            _save_csr(path, "ratings", self.ratings)
        self.users.save(path, "users")
        self.items.save(path, "items")
        meta = dict(self.info, shape=list(self.shape), has_ratings=self.ratings is not None)
        (path / "interactions.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> Interactions:
        """Read what :meth:`save` wrote (arrays memory-mapped when ``mmap``)."""
        path = Path(path)
        meta = json.loads((path / "interactions.json").read_text())
        shape = tuple(meta.pop("shape"))
        has_ratings = meta.pop("has_ratings")
        matrix = _load_csr(path, "matrix", shape, mmap)
        ratings = _load_csr(path, "ratings", shape, mmap) if has_ratings else None
        users = Vocabulary.load(path, "users", mmap=mmap)
        items = Vocabulary.load(path, "items", mmap=mmap)
        return cls(matrix, users, items, ratings, meta)


# helpers -------------------------------------------------------------------------------------
def _canonical(m: sp.csr_matrix, keep_zeros: bool = False) -> sp.csr_matrix:
    """Sorted indices, summed duplicates, and (unless ``keep_zeros``) only positive entries."""
    m.sum_duplicates()
    if not keep_zeros and m.nnz and (m.data <= 0).any():
        m = m.copy()  # never zero the caller's arrays
        m.data[m.data < 0] = 0
        m.eliminate_zeros()
    m.sort_indices()
    return m


def _latest(
    u: np.ndarray, i: np.ndarray, ts: np.ndarray, value: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """The value of the newest event per (u, i) pair (ties: the later row wins)."""
    key = u.astype(np.int64) * shape[1] + i.astype(np.int64)
    order = np.lexsort((np.arange(len(key)), ts, key))
    key_sorted = key[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = key_sorted[1:] != key_sorted[:-1]
    pick = order[last]
    out = sp.csr_matrix((value[pick].astype(np.float32), (u[pick], i[pick])), shape=shape, dtype=np.float32)
    out.sort_indices()
    return out


def _float_column(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _save_csr(path: Path, name: str, m: sp.csr_matrix) -> None:
    np.save(path / f"{name}.indptr.npy", m.indptr, allow_pickle=False)
    np.save(path / f"{name}.indices.npy", m.indices, allow_pickle=False)
    np.save(path / f"{name}.data.npy", m.data, allow_pickle=False)


def _load_csr(path: Path, name: str, shape: tuple[int, ...], mmap: bool) -> sp.csr_matrix:
    mode: Literal["r"] | None = "r" if mmap else None
    arrays = [
        np.load(path / f"{name}.{part}.npy", mmap_mode=mode, allow_pickle=False)
        for part in ("data", "indices", "indptr")
    ]
    return sp.csr_matrix((arrays[0], arrays[1], arrays[2]), shape=shape, copy=False)
