"""Event keys: 128-bit hashes of event ids, the sorted key sets the store dedupes against,
and the deterministic ids of events whose source gave none.

The key of an event is MurmurHash3_x64_128 (seed 0) of its ``event_id`` in UTF-8. Two distinct
ids share a key with probability about ``n**2 / 2**129`` among ``n`` events (below 1e-20 for a
billion events), so the store treats equal keys as equal ids.

An event without an id gets ``"~"`` followed by the 32 hex digits of the hash of its content,
``user_id␟item_id␟event_type␟timestamp_us␟value_bits`` (␟ is U+001F, ``value_bits`` the
IEEE-754 bits of the float64 value as an integer): the same event read twice gets the same
id, so re-ingesting a file is idempotent.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recforge._numba import kernel

__all__ = [
    "KeyLog",
    "Keys",
    "contains_any",
    "derive_event_ids",
    "first_occurrences",
    "hash128",
    "murmur3_128_reference",
]

_C1 = np.uint64(0x87C37B91114253D5)
_C2 = np.uint64(0x4CF5AD432745937F)
_F1 = np.uint64(0xFF51AFD7ED558CCD)
_F2 = np.uint64(0xC4CEB9FE1A85EC53)
_M1 = np.uint64(0x52DCE729)
_M2 = np.uint64(0x38495AB5)
_FIVE = np.uint64(5)
_U8 = np.uint64(8)


@kernel()
def _rotl(x: np.uint64, r: np.uint64) -> np.uint64:
    return (x << r) | (x >> (np.uint64(64) - r))


@kernel()
def _fmix(h: np.uint64) -> np.uint64:
    h ^= h >> np.uint64(33)
    h *= _F1
    h ^= h >> np.uint64(33)
    h *= _F2
    h ^= h >> np.uint64(33)
    return h


@kernel()
def _read64(data: np.ndarray, start: int, count: int) -> np.uint64:
    """``count`` (<= 8) bytes from ``start``, little-endian."""
    word = np.uint64(0)
    for j in range(count):
        word |= np.uint64(data[start + j]) << (_U8 * np.uint64(j))
    return word


@kernel()
def _murmur3_128(offsets: np.ndarray, data: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> None:
    """MurmurHash3_x64_128 (seed 0) of each string ``data[offsets[k]:offsets[k + 1]]``."""
    for k in range(len(offsets) - 1):
        start = offsets[k]
        length = offsets[k + 1] - start
        h1 = np.uint64(0)
        h2 = np.uint64(0)
        nblocks = length // 16
        for b in range(nblocks):
            k1 = _read64(data, start + 16 * b, 8)
            k2 = _read64(data, start + 16 * b + 8, 8)
            k1 *= _C1
            k1 = _rotl(k1, np.uint64(31))
            k1 *= _C2
            h1 ^= k1
            h1 = _rotl(h1, np.uint64(27))
            h1 += h2
            h1 = h1 * _FIVE + _M1
            k2 *= _C2
            k2 = _rotl(k2, np.uint64(33))
            k2 *= _C1
            h2 ^= k2
            h2 = _rotl(h2, np.uint64(31))
            h2 += h1
            h2 = h2 * _FIVE + _M2
        tail = start + 16 * nblocks
        rest = length - 16 * nblocks
        if rest > 8:
            k2 = _read64(data, tail + 8, rest - 8)
            k2 *= _C2
            k2 = _rotl(k2, np.uint64(33))
            k2 *= _C1
            h2 ^= k2
        if rest > 0:
            k1 = _read64(data, tail, min(rest, 8))
            k1 *= _C1
            k1 = _rotl(k1, np.uint64(31))
            k1 *= _C2
            h1 ^= k1
        h1 ^= np.uint64(length)
        h2 ^= np.uint64(length)
        h1 += h2
        h2 += h1
        h1 = _fmix(h1)
        h2 = _fmix(h2)
        h1 += h2
        h2 += h1
        hi[k] = h1
        lo[k] = h2


def hash128(strings: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(h1, h2)`` uint64 arrays: MurmurHash3_x64_128 (seed 0) of each UTF-8 string.

    ``h1``/``h2`` are the two 64-bit halves as the reference implementation returns them
    (``mmh3.hash64(s, signed=False)``). Nulls must have been replaced before.
    """
    array = _large_strings(strings)
    if array.null_count:
        raise ValueError("cannot hash null ids")
    n = len(array)
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[array.offset : array.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    hi = np.empty(n, dtype=np.uint64)
    lo = np.empty(n, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the algorithm (JIT-off runs)
        _murmur3_128(offsets, data, hi, lo)
    return hi, lo


def murmur3_128_reference(text: str) -> tuple[int, int]:
    """Plain-Python MurmurHash3_x64_128 (seed 0): the specification :func:`hash128` is tested on."""
    mask = (1 << 64) - 1
    c1, c2 = int(_C1), int(_C2)

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (64 - r))) & mask

    def fmix(h: int) -> int:
        h ^= h >> 33
        h = (h * int(_F1)) & mask
        h ^= h >> 33
        h = (h * int(_F2)) & mask
        return h ^ (h >> 33)

    data = text.encode()
    h1 = h2 = 0
    nblocks = len(data) // 16
    for b in range(nblocks):
        k1 = int.from_bytes(data[16 * b : 16 * b + 8], "little")
        k2 = int.from_bytes(data[16 * b + 8 : 16 * b + 16], "little")
        h1 ^= rotl((k1 * c1) & mask, 31) * c2 & mask
        h1 = (rotl(h1, 27) + h2) & mask
        h1 = (h1 * 5 + 0x52DCE729) & mask
        h2 ^= rotl((k2 * c2) & mask, 33) * c1 & mask
        h2 = (rotl(h2, 31) + h1) & mask
        h2 = (h2 * 5 + 0x38495AB5) & mask
    tail = data[16 * nblocks :]
    if len(tail) > 8:
        h2 ^= rotl((int.from_bytes(tail[8:], "little") * c2) & mask, 33) * c1 & mask
    if tail:
        h1 ^= rotl((int.from_bytes(tail[:8], "little") * c1) & mask, 31) * c2 & mask
    h1 ^= len(data)
    h2 ^= len(data)
    h1 = (h1 + h2) & mask
    h2 = (h2 + h1) & mask
    h1, h2 = fmix(h1), fmix(h2)
    h1 = (h1 + h2) & mask
    h2 = (h2 + h1) & mask
    return h1, h2


class Keys:
    """An immutable set of 128-bit keys, held as ``hi`` (sorted uint64) and ``lo`` (aligned).

    Membership is a binary search on ``hi`` and a check of ``lo``; runs of equal ``hi`` (64-bit
    collisions: rare, but possible among billions of keys) are handled exactly.
    """

    __slots__ = ("_runs", "hi", "lo")

    def __init__(self, hi: np.ndarray, lo: np.ndarray, *, is_sorted: bool = False) -> None:
        hi = np.asarray(hi, dtype=np.uint64)
        lo = np.asarray(lo, dtype=np.uint64)
        if not is_sorted:
            order = np.argsort(hi, kind="stable")
            hi, lo = hi[order], lo[order]
        self.hi = hi
        self.lo = lo
        self._runs = bool(len(hi) > 1 and (hi[1:] == hi[:-1]).any())

    @classmethod
    def empty(cls) -> Keys:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint64), is_sorted=True)

    @classmethod
    def merge(cls, parts: list[Keys]) -> Keys:
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        # concatenated sorted runs: the stable sort merges them in near-linear time
        return cls(np.concatenate([p.hi for p in parts]), np.concatenate([p.lo for p in parts]))

    def __len__(self) -> int:
        return len(self.hi)

    def contains(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Boolean mask: which of the query keys ``(hi[j], lo[j])`` are in the set (queries
        sorted by ``hi`` are answered fastest)."""
        found = np.zeros(len(hi), dtype=bool)
        if not len(self.hi) or not len(hi):
            return found
        left = np.searchsorted(self.hi, hi, side="left")
        if not self._runs:
            inside = np.flatnonzero(left < len(self.hi))
            at = left[inside]
            found[inside] = (self.hi[at] == hi[inside]) & (self.lo[at] == lo[inside])
            return found
        right = np.searchsorted(self.hi, hi, side="right")
        run = right - left
        single = np.flatnonzero(run == 1)
        found[single] = self.lo[left[single]] == lo[single]
        for j in np.flatnonzero(run > 1):
            found[j] = bool((self.lo[left[j] : right[j]] == lo[j]).any())
        return found

    def to_array(self) -> np.ndarray:
        """``(2, n)`` uint64: row 0 ``hi`` (sorted), row 1 ``lo``; what :meth:`from_array` reads."""
        return np.stack([self.hi, self.lo]) if len(self.hi) else np.zeros((2, 0), np.uint64)

    @classmethod
    def from_array(cls, array: np.ndarray) -> Keys:
        if array.ndim != 2 or array.shape[0] != 2 or array.dtype != np.uint64:
            raise ValueError("not a key array")
        hi, lo = np.ascontiguousarray(array[0]), np.ascontiguousarray(array[1])
        if len(hi) > 1 and not (hi[1:] >= hi[:-1]).all():
            raise ValueError("key array is not sorted")
        return cls(hi, lo, is_sorted=True)


class KeyLog:
    """A growing key set: a few sorted :class:`Keys` of geometrically decreasing size (merged
    as they fill, like a log-structured merge tree), so adding ``n`` keys in batches costs
    ``O(n log n)`` and a lookup searches ``O(log n)`` arrays."""

    def __init__(self) -> None:
        self.parts: list[Keys] = []

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def add(self, keys: Keys) -> None:
        if not len(keys):
            return
        self.parts.append(keys)
        while len(self.parts) > 1 and 2 * len(self.parts[-1]) >= len(self.parts[-2]):
            last = self.parts.pop()
            self.parts[-1] = Keys.merge([self.parts[-1], last])

    def contains(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        return contains_any(self.parts, hi, lo)

    def keys(self) -> Keys:
        return Keys.merge(self.parts)


def contains_any(sets: list[Keys], hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Which query keys are in any of ``sets`` (queries sorted once, then searched per set)."""
    found = np.zeros(len(hi), dtype=bool)
    sets = [s for s in sets if len(s)]
    if not sets or not len(hi):
        return found
    order = np.argsort(hi, kind="stable")
    shi, slo = hi[order], lo[order]
    hit = np.zeros(len(hi), dtype=bool)
    for keys in sets:
        hit |= keys.contains(shi, slo)
    found[order] = hit
    return found


def first_occurrences(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Boolean mask of the first occurrence of each distinct key (later repeats are False)."""
    keep = np.ones(len(hi), dtype=bool)
    if len(hi) < 2:
        return keep
    order = np.argsort(hi, kind="stable")
    sorted_hi = hi[order]
    equal = sorted_hi[1:] == sorted_hi[:-1]
    if not equal.any():
        return keep
    in_run = np.zeros(len(hi), dtype=bool)
    in_run[1:] |= equal
    in_run[:-1] |= equal
    rows = np.sort(order[in_run])  # the few rows whose 64-bit half repeats, in input order
    sub = np.lexsort((lo[rows], hi[rows]))  # stable: equal keys stay in input order
    ranked = rows[sub]
    same = (hi[ranked][1:] == hi[ranked][:-1]) & (lo[ranked][1:] == lo[ranked][:-1])
    keep[ranked[1:][same]] = False
    return keep


def derive_event_ids(table: pa.Table) -> pa.Array:
    """``"~" + 32 hex digits`` of the content hash of each row (see the module docstring)."""
    ts = table.column("timestamp").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    value = np.ascontiguousarray(table.column("value").to_numpy(), dtype=np.float64)
    content = pc.binary_join_element_wise(
        table.column("user_id").cast(pa.large_string()),
        table.column("item_id").cast(pa.large_string()),
        table.column("event_type").cast(pa.large_string()),
        ts.cast(pa.large_string()),
        pa.array(value.view(np.int64)).cast(pa.large_string()),
        pa.scalar("\x1f", pa.large_string()),
    )
    hi, lo = hash128(content)
    return _hex_ids(hi, lo)


def _hex_ids(hi: np.ndarray, lo: np.ndarray) -> pa.Array:
    """Strings ``"~" + hex(hi) + hex(lo)`` (33 characters), built without a Python loop."""
    n = len(hi)
    raw = np.empty((n, 2), dtype=">u8")
    raw[:, 0] = hi
    raw[:, 1] = lo
    digits = np.frombuffer(raw.tobytes().hex().encode(), dtype=np.uint8).reshape(n, 32)
    text = np.empty((n, 33), dtype=np.uint8)
    text[:, 0] = ord("~")
    text[:, 1:] = digits
    offsets = np.arange(0, 33 * (n + 1), 33, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def _large_strings(values: pa.Array | pa.ChunkedArray) -> pa.LargeStringArray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.large_string())
    if values.type != pa.large_string():
        values = values.cast(pa.large_string())
    return values
