"""Id vocabularies: external string ids <-> dense int32 indices.

A :class:`Vocabulary` is an ordered set of distinct strings; index ``i`` is the dense id of
``ids[i]``. It is stored the way Arrow stores strings, as one UTF-8 byte buffer plus int64
offsets, so it saves to two ``.npy`` files that load memory-mapped, with no pickle.

Unknown ids have one documented policy: :meth:`Vocabulary.lookup` returns ``-1`` for them (the
caller decides: skip, fall back, or raise), and :meth:`Vocabulary.index` raises ``KeyError``
naming the id. Nothing ever raises ``IndexError`` for an unknown id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["Vocabulary"]


class Vocabulary:
    """An immutable, ordered vocabulary of string ids."""

    __slots__ = ("_array", "_index")

    def __init__(self, ids: pa.Array | pa.ChunkedArray | Sequence[str] | np.ndarray) -> None:
        array = _as_string_array(ids)
        if array.null_count:
            raise ValueError("a vocabulary cannot hold null ids")
        if pc.count_distinct(array).as_py() != len(array):
            raise ValueError("vocabulary ids must be distinct")
        self._array: pa.LargeStringArray = array
        self._index: dict[str, int] | None = None

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_values(cls, values: pa.Array | pa.ChunkedArray | Iterable[str]) -> Vocabulary:
        """The distinct values, sorted: a deterministic vocabulary for any input order."""
        array = _as_string_array(values if isinstance(values, pa.Array | pa.ChunkedArray) else list(values))
        distinct = pc.unique(array)
        return cls(pc.take(distinct, pc.sort_indices(distinct)))

    @classmethod
    def range(cls, n: int) -> Vocabulary:
        """The ids ``"0" .. "n-1"`` (for matrices given without vocabularies), built without a
        Python object per id."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        array = pa.array(np.arange(n).astype("U"), type=pa.large_string())
        vocab = cls.__new__(cls)
        vocab._array = array
        vocab._index = None
        return vocab

    def extend(self, values: pa.Array | pa.ChunkedArray | Iterable[str]) -> Vocabulary:
        """A new vocabulary with the unseen ``values`` appended (existing indices unchanged)."""
        array = _as_string_array(values if isinstance(values, pa.Array | pa.ChunkedArray) else list(values))
        new = pc.unique(pc.filter(array, pc.invert(pc.is_in(array, value_set=self._array))))
        new = pc.take(new, pc.sort_indices(new))
        return Vocabulary(pa.concat_arrays([self._array, new.cast(pa.large_string())]))

    # lookups ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._array)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and item in self._dict()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._array.equals(other._array)

    def __hash__(self) -> int:  # pragma: no cover - vocabularies are not used as keys
        return hash(len(self))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids)"

    def lookup(self, values: pa.Array | pa.ChunkedArray | Sequence[str] | np.ndarray) -> np.ndarray:
        """Dense indices (int32) of ``values``; ``-1`` where a value is not in the vocabulary."""
        array = _as_string_array(values)
        found = pc.index_in(array, value_set=self._array)
        return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32)

    def index(self, value: str) -> int:
        """The dense index of one id; ``KeyError`` naming it when unknown."""
        try:
            return self._dict()[value]
        except KeyError:
            raise KeyError(f"unknown id {value!r}") from None

    def get(self, value: str, default: int = -1) -> int:
        """The dense index of one id, or ``default`` when unknown (O(1) after the first call)."""
        return self._dict().get(value, default)

    def ids(self, indices: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """External ids (object array of ``str``) at ``indices`` (all when ``None``).

        Negative indices (padding, unknown) become ``None``.
        """
        if indices is None:
            return np.asarray(self._array.to_numpy(zero_copy_only=False), dtype=object)
        idx = np.asarray(indices, dtype=np.int64)
        valid = idx >= 0
        out = np.empty(idx.shape, dtype=object)
        if valid.any():
            taken = pc.take(self._array, pa.array(idx[valid])).to_numpy(zero_copy_only=False)
            out[valid] = taken
        out[~valid] = None
        return out

    def id(self, index: int) -> str:
        """The external id of one dense index."""
        if not 0 <= index < len(self):
            raise KeyError(f"index {index} outside a vocabulary of {len(self)} ids")
        return str(self._array[index].as_py())

    @property
    def array(self) -> pa.LargeStringArray:
        """The ids as an Arrow array (zero copy)."""
        return self._array

    def _dict(self) -> dict[str, int]:
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self._array.to_pylist())}
        return self._index

    # persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path, name: str) -> None:
        """Write ``<name>.offsets.npy`` (int64) and ``<name>.data.npy`` (uint8, UTF-8)."""
        directory = Path(directory)
        offsets, data = self.to_buffers()
        np.save(directory / f"{name}.offsets.npy", offsets, allow_pickle=False)
        np.save(directory / f"{name}.data.npy", data, allow_pickle=False)

    @classmethod
    def load(cls, directory: str | Path, name: str, mmap: bool = True) -> Vocabulary:
        """Read a vocabulary written by :meth:`save` (memory-mapped by default)."""
        directory = Path(directory)
        mode: Literal["r"] | None = "r" if mmap else None
        offsets = np.load(directory / f"{name}.offsets.npy", mmap_mode=mode, allow_pickle=False)
        data = np.load(directory / f"{name}.data.npy", mmap_mode=mode, allow_pickle=False)
        return cls.from_buffers(offsets, data)

    def to_buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """``(offsets int64[n + 1], utf8 uint8[nbytes])``, Arrow's large-string layout."""
        array = self._array
        _, offsets_buf, data_buf = array.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int64)[array.offset : array.offset + len(array) + 1]
        start, stop = int(offsets[0]), int(offsets[-1])
        data = (
            np.frombuffer(data_buf, dtype=np.uint8)[start:stop]
            if data_buf is not None
            else np.zeros(0, np.uint8)
        )
        return offsets - start, np.ascontiguousarray(data)

    @classmethod
    def from_buffers(cls, offsets: np.ndarray, data: np.ndarray) -> Vocabulary:
        """Build from Arrow-layout buffers without copying the string bytes."""
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        data = np.ascontiguousarray(data, dtype=np.uint8)
        array = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data))
        vocab = cls.__new__(cls)
        vocab._array = array
        vocab._index = None
        return vocab


def _as_string_array(values: pa.Array | pa.ChunkedArray | Sequence[str] | np.ndarray) -> pa.LargeStringArray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.large_string())
    if not isinstance(values, pa.Array):
        values = pa.array(list(values) if isinstance(values, np.ndarray) else values, type=pa.large_string())
    if values.type != pa.large_string():
        values = values.cast(pa.large_string())
    return values
