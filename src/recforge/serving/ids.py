"""External id -> dense index lookups for serving, in bounded memory.

A served model may know millions of users; a Python ``dict`` of their ids costs about 100
bytes per id. :class:`IdIndex` keeps 12 bytes per id instead: the 64-bit hash of every id
(Python's own string hash: SipHash, salted per process, which is fine for an index built in
the process that uses it), sorted once, and the permutation back to dense indices. A lookup
hashes the query (``O(1)``, cached on the string), binary-searches the sorted hashes
(``O(log n)``) and confirms the candidate by comparing the stored string, so a collision can
never return a wrong index.

With ``keep_names`` (the item catalogue, which answers name), the ids are also held as a Python
list (about 70 bytes per id) so that naming the items of an answer costs a list index each.

In a route's path an external id is ``{user_id:id}``: any text, ``/`` and line breaks included
(a client percent-encodes them: ``a%2Fb``; and an id ``.`` or ``..`` as ``%2E``/``%2E%2E``, since
clients drop dot segments from paths), so that every id the event store accepts is one the API
can answer for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from starlette.convertors import Convertor, register_url_convertor

from recforge.data.vocabulary import Vocabulary

__all__ = ["IdIndex"]


class _IdConvertor(Convertor[str]):
    """A path segment holding an external id: any text (``/`` and line breaks included)."""

    regex = "(?s:.*)"  # an empty id is matched too, and refused (422) by the route

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", _IdConvertor())

_CHUNK = 1 << 14
#: ``keep_names`` is ignored above this many ids (memory).
MAX_KEPT_NAMES = 2_000_000


class IdIndex:
    """Exact lookups of external ids in a :class:`Vocabulary` (``-1`` for unknown ids)."""

    __slots__ = ("_hashes", "_ids", "_names", "_order")

    def __init__(self, vocabulary: Vocabulary, *, keep_names: bool = False) -> None:
        self._ids: pa.LargeStringArray = vocabulary.array
        n = len(self._ids)
        keep = keep_names and n <= MAX_KEPT_NAMES
        names: list[str] = []
        hashes = np.empty(n, dtype=np.int64)
        # in chunks: bounded transient memory, and a server loading a new version in a
        # background thread gives the event loop the GIL between chunks
        for start in range(0, n, _CHUNK):
            chunk = self._ids.slice(start, _CHUNK).to_pylist()
            stop = start + len(chunk)
            hashes[start:stop] = np.fromiter(map(hash, chunk), dtype=np.int64, count=len(chunk))
            if keep:
                names.extend(chunk)
        self._names: list[str] | None = names if keep else None
        order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[order]
        self._order = order.astype(np.int32 if n < 2**31 else np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, value: str) -> int:
        """The dense index of one id, or ``-1``."""
        hashes = self._hashes
        key = hash(value)
        at = int(hashes.searchsorted(key))
        names = self._names
        while at < len(hashes) and hashes[at] == key:
            candidate = int(self._order[at])
            if (names[candidate] if names is not None else self._ids[candidate].as_py()) == value:
                return candidate
            at += 1
        return -1

    def lookup(self, values: Sequence[str]) -> np.ndarray:
        """Dense indices (int32) of ``values``; ``-1`` where an id is unknown."""
        return np.fromiter(map(self.get, values), dtype=np.int32, count=len(values))

    def names(self, indices: np.ndarray) -> list[str]:
        """External ids of dense indices (all valid)."""
        if self._names is not None:
            names = self._names
            return [names[i] for i in np.asarray(indices).tolist()]
        if not len(indices):
            return []
        return pc.take(self._ids, pa.array(np.asarray(indices, dtype=np.int64))).to_pylist()
