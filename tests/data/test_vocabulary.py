import numpy as np
import pyarrow as pa
import pytest

from recforge.data.vocabulary import Vocabulary


def test_from_values_is_sorted_and_distinct():
    vocab = Vocabulary.from_values(["b", "a", "c", "a", "b"])
    assert list(vocab.ids()) == ["a", "b", "c"]
    assert len(vocab) == 3


def test_lookup_known_and_unknown():
    vocab = Vocabulary(["u1", "u2", "u3"])
    assert vocab.lookup(["u3", "nope", "u1"]).tolist() == [2, -1, 0]
    assert vocab.lookup(["u3"]).dtype == np.int32
    assert vocab.get("u2") == 1
    assert vocab.get("zz") == -1
    with pytest.raises(KeyError, match="zz"):
        vocab.index("zz")
    assert "u1" in vocab and "x" not in vocab


def test_ids_of_indices_with_padding():
    vocab = Vocabulary(["x", "y"])
    assert vocab.ids(np.array([[1, -1], [0, 1]])).tolist() == [["y", None], ["x", "y"]]
    assert vocab.id(0) == "x"
    with pytest.raises(KeyError):
        vocab.id(5)


def test_duplicates_and_nulls_rejected():
    with pytest.raises(ValueError, match="distinct"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="null"):
        Vocabulary(pa.array(["a", None]))


def test_extend_keeps_existing_indices():
    vocab = Vocabulary(["b", "a"])
    bigger = vocab.extend(["c", "a", "d", "c"])
    assert list(bigger.ids()) == ["b", "a", "c", "d"]


@pytest.mark.parametrize("mmap", [True, False])
def test_save_load_round_trip_unicode(tmp_path, mmap):
    vocab = Vocabulary(["", "é", "用户", "a" * 256])
    vocab.save(tmp_path, "users")
    loaded = Vocabulary.load(tmp_path, "users", mmap=mmap)
    assert loaded == vocab
    assert loaded.lookup(["用户"]).tolist() == [2]


def test_sliced_array_buffers_round_trip():
    array = pa.array(["zero", "one", "two", "three"], pa.large_string()).slice(1, 2)
    vocab = Vocabulary(array)
    offsets, data = vocab.to_buffers()
    assert offsets[0] == 0 and offsets[-1] == len(data)
    assert list(Vocabulary.from_buffers(offsets, data).ids()) == ["one", "two"]


def test_range_vocabulary():
    vocab = Vocabulary.range(12)
    assert list(vocab.ids()) == [str(i) for i in range(12)]
    assert vocab.lookup(["11", "3", "12"]).tolist() == [11, 3, -1]
    assert len(Vocabulary.range(0)) == 0
    with pytest.raises(ValueError):
        Vocabulary.range(-1)
