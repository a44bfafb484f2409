"""External id -> dense index lookups for serving, in bounded memory.

A served model may know millions of users; a Python ``dict`` of their ids would cost about
100 bytes per id and seconds to build on every model load. :class:`IdIndex` keeps 12 bytes per
id instead: the 64-bit MurmurHash3 of every id, sorted once (``O(n log n)``, vectorised), and
the permutation back to dense indices. A lookup hashes the query, binary-searches the sorted
hashes (``O(log n)``) and confirms the candidate by comparing the actual strings, so a hash
collision can never return a wrong index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge.data.keys import hash128
from recforge.data.vocabulary import Vocabulary

__all__ = ["IdIndex"]


class IdIndex:
    """Exact lookups of external ids in a :class:`Vocabulary` (``-1`` for unknown ids)."""

    __slots__ = ("_hashes", "_ids", "_order")

    def __init__(self, vocabulary: Vocabulary) -> None:
        self._ids = vocabulary.array
        hashes, _ = hash128(self._ids) if len(self._ids) else (np.zeros(0, np.uint64), None)
        order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[order]
        self._order = order.astype(np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, value: str) -> int:
        """The dense index of one id, or ``-1``."""
        return int(self.lookup([value])[0])

    def lookup(self, values: Sequence[str]) -> np.ndarray:
        """Dense indices (int32) of ``values``; ``-1`` where an id is unknown."""
        n = len(values)
        out = np.full(n, -1, dtype=np.int32)
        if not n or not len(self._hashes):
            return out
        try:
            query = pa.array(values, pa.large_string())
        except (pa.ArrowException, UnicodeError):  # e.g. lone surrogates: no stored id has one
            return np.array([self.get(v) if _encodable(v) else -1 for v in values], dtype=np.int32)
        if query.null_count:
            raise ValueError("ids must not be null")
        hashes, _ = hash128(query)
        left = np.searchsorted(self._hashes, hashes, side="left")
        right = np.searchsorted(self._hashes, hashes, side="right")
        run = right - left
        single = np.flatnonzero(run == 1)
        if len(single):
            candidates = self._order[left[single]]
            same = pc.equal(pc.take(self._ids, pa.array(candidates)), query.take(pa.array(single)))
            ok = np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
            out[single[ok]] = candidates[ok]
        for j in np.flatnonzero(run > 1):  # two ids share 64 hash bits: compare each candidate
            for candidate in self._order[left[j] : right[j]]:
                if self._ids[int(candidate)].as_py() == values[int(j)]:
                    out[j] = candidate
                    break
        return out

    def names(self, indices: np.ndarray) -> list[str]:
        """External ids of dense indices (all valid)."""
        if not len(indices):
            return []
        return pc.take(self._ids, pa.array(np.asarray(indices, dtype=np.int64))).to_pylist()


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeError:
        return False
    return True
