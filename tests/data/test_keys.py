"""Event keys: MurmurHash3 against known values and its Python twin, key sets, derived ids."""

import numpy as np
import pyarrow as pa
import pytest

from recforge.data.keys import (
    KeyLog,
    Keys,
    contains_any,
    derive_event_ids,
    first_occurrences,
    hash128,
    murmur3_128_reference,
)
from recforge.data.schema import EVENT_SCHEMA

# mmh3.hash64(s, 0, signed=False), i.e. MurmurHash3_x64_128 with seed 0
KNOWN = {
    "": (0, 0),
    "a": (9607679276477937801, 16624257681780017498),
    "hello": (14688674573012802306, 6565844092913065241),
    "0123456789abcdef": (5467490433528156583, 9782763267945859290),
    "0123456789abcdefX": (14838185036522510071, 10336343437188549415),
    "é漢字🙂 event-17": (12461657912190798868, 5835738426725944569),
}


def test_hash128_matches_known_values_and_the_reference():
    words = [*KNOWN, "x" * 300, "y" * 15, "z" * 31, "w" * 33]
    hi, lo = hash128(pa.array(words))
    for word, a, b in zip(words, hi, lo, strict=True):
        assert (int(a), int(b)) == murmur3_128_reference(word)
        if word in KNOWN:
            assert (int(a), int(b)) == KNOWN[word]


def test_hash128_of_a_sliced_chunked_array():
    array = pa.chunked_array([pa.array(["p", "q"]), pa.array(["r", "hello", "s"])]).slice(2, 2)
    hi, lo = hash128(array)
    assert (int(hi[1]), int(lo[1])) == KNOWN["hello"]
    with pytest.raises(ValueError, match="null"):
        hash128(pa.array(["a", None]))


def test_keys_contains_handles_64_bit_collisions_exactly():
    keys = Keys(np.array([5, 3, 5, 9], np.uint64), np.array([1, 2, 7, 0], np.uint64))
    found = keys.contains(
        np.array([5, 5, 5, 3, 3, 9, 10], np.uint64), np.array([1, 7, 8, 2, 1, 0, 0], np.uint64)
    )
    assert found.tolist() == [True, True, False, True, False, True, False]
    plain = Keys(np.array([1, 2], np.uint64), np.array([1, 2], np.uint64))
    assert plain.contains(np.array([2, 3, 1], np.uint64), np.array([2, 3, 9], np.uint64)).tolist() == [
        True,
        False,
        False,
    ]
    assert Keys.from_array(keys.to_array()).contains(keys.hi, keys.lo).all()


def test_first_occurrences_keeps_the_first_of_each_key():
    hi = np.array([5, 3, 5, 5, 3, 7], np.uint64)
    lo = np.array([1, 2, 1, 9, 2, 0], np.uint64)
    assert first_occurrences(hi, lo).tolist() == [True, True, False, True, False, True]


def test_key_log_merges_and_answers_like_one_set():
    rng = np.random.default_rng(0)
    log, everything = KeyLog(), []
    for size in (100, 50, 400, 3, 3, 3, 1000):
        hi = rng.integers(0, 2**63, size, dtype=np.uint64)
        lo = rng.integers(0, 2**63, size, dtype=np.uint64)
        log.add(Keys(hi, lo))
        everything.append((hi, lo))
    assert len(log.parts) <= 4 and len(log) == 1559
    hi = np.concatenate([h for h, _ in everything])
    lo = np.concatenate([x for _, x in everything])
    assert log.contains(hi, lo).all()
    assert not log.contains(hi, lo + np.uint64(1)).any()
    assert contains_any([Keys(hi[:5], lo[:5])], hi[:10], lo[:10]).tolist() == [True] * 5 + [False] * 5


def test_derived_ids_are_deterministic_and_content_sensitive():
    rows = {
        "event_id": [None, None, None],
        "user_id": ["u1", "u1", "u1"],
        "item_id": ["i1", "i1", "i1"],
        "event_type": ["view", "view", "view"],
        "value": [1.0, 1.0, 2.0],
        "timestamp": [0, 0, 0],
        "recommendation_id": [None, None, None],
    }
    table = pa.table(rows).cast(EVENT_SCHEMA)
    ids = derive_event_ids(table).to_pylist()
    assert ids[0] == ids[1] != ids[2]
    assert all(len(i) == 33 and i.startswith("~") for i in ids)
    assert derive_event_ids(table).to_pylist() == ids


def test_derived_ids_ignore_the_recommendation_followed():
    """Issue 18: an event's derived id is the same with and without a ``recommendation_id``."""
    rows = {
        "event_id": [None, None],
        "user_id": ["u1", "u1"],
        "item_id": ["i1", "i1"],
        "event_type": ["view", "view"],
        "value": [1.0, 1.0],
        "timestamp": [5, 5],
        "recommendation_id": [None, "r1"],
    }
    with_column = derive_event_ids(pa.table(rows).cast(EVENT_SCHEMA)).to_pylist()
    del rows["recommendation_id"]
    without = derive_event_ids(pa.table(rows).cast(pa.schema(list(EVENT_SCHEMA)[:-1]))).to_pylist()
    assert with_column[0] == with_column[1] == without[0]
