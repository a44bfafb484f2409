"""Readers: every format, gzip, detection, mappings, line numbers, the real MovieLens files."""

import gzip

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from recforge.config import DataConfig
from recforge.data.readers import Source, detect_format, parse_mapping
from recforge.data.schema import FIXED_TIMESTAMP
from recforge.data.validation import validate_table
from recforge.errors import RecforgeError, UnreadableSourceError
from tests.conftest import dataset_path

HEADER = "event_id,user_id,item_id,event_type,value,timestamp\n"
ROWS = [
    "e1,u1,i1,view,1,2024-01-01T00:00:00Z",
    "e2,u2,i1,like,2,1704067200",
    "e3,u1,i2,cart,1,2024-01-02 10:00:00",
]


def read(path, chunk_rows=1_000_000, config=None, **source_args):
    """All good rows and all rejections of a file."""
    source = Source(path, **source_args)
    tables, rejections = [], []
    for chunk in source.chunks(chunk_rows):
        good, bad = validate_table(
            chunk.table,
            config or DataConfig(),
            source=str(path),
            locations=chunk.locations,
            raw=chunk.raw,
            extra=chunk.extra,
            malformed=chunk.malformed,
        )
        tables.append(good)
        rejections += bad
    table = pa.concat_tables(tables) if tables else None
    return source, table, rejections


def write(path, text, gz=False):
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_csv_tsv_and_jsonl_read_the_same_events(tmp_path, gz):
    suffix = ".gz" if gz else ""
    csv = write(tmp_path / f"e.csv{suffix}", HEADER + "\n".join(ROWS) + "\n", gz)
    tsv = write(tmp_path / f"e.tsv{suffix}", (HEADER + "\n".join(ROWS)).replace(",", "\t"), gz)
    lines = []
    for row in ROWS:
        e, u, i, t, v, ts = row.split(",")
        lines.append(
            f'{{"event_id": "{e}", "user_id": "{u}", "item_id": "{i}", "event_type": "{t}", '
            f'"value": {v}, "timestamp": "{ts}"}}'
        )
    jsonl = write(tmp_path / f"e.jsonl{suffix}", "\n".join(lines) + "\n", gz)
    results = [read(p) for p in (csv, tsv, jsonl)]
    assert [s.format.name for s, _, _ in results] == ["csv", "tsv", "jsonl"]
    expected = results[0][1]
    assert expected.num_rows == 3 and expected.column("value").to_pylist() == [1.0, 2.0, 1.0]
    for _, table, rejections in results:
        assert not rejections
        assert table.equals(expected)


def test_parquet_with_a_mapping(tmp_path):
    path = tmp_path / "e.parquet"
    pq.write_table(
        pa.table(
            {"who": ["u1", "u2"], "what": ["i1", "i2"], "kind": ["view", "view"], "when": [1.7e9, 1.7e9]}
        ),
        path,
    )
    mapping = parse_mapping("user_id=who, item_id=what,event_type=kind,timestamp=when")
    _, table, rejections = read(path, mapping=mapping)
    assert table.column("user_id").to_pylist() == ["u1", "u2"] and not rejections
    with pytest.raises(UnreadableSourceError, match="no column 'user_id' for user_id"):
        read(path)


def test_parse_mapping_errors():
    assert parse_mapping(None) == {}
    with pytest.raises(RecforgeError, match="unknown field 'user'"):
        parse_mapping("user=userId")
    with pytest.raises(RecforgeError, match="not FIELD=COLUMN"):
        parse_mapping("user_id")


def test_line_numbers_count_physical_lines_across_chunks(tmp_path):
    text = (
        HEADER
        + "\r\n".join([ROWS[0], "", ROWS[1], "bad,row", ROWS[2], "", "x,,i,view,1,1", ROWS[0]])
        + "\r\n"
    )
    path = write(tmp_path / "e.csv", text)
    for chunk_rows in (1, 2, 3, 100):
        _, table, rejections = read(path, chunk_rows=chunk_rows)
        assert table.num_rows == 4
        assert [(r.location["line"], r.reason) for r in rejections] == [
            (5, "wrong column count: 2 fields, expected 6"),
            (8, "missing user_id"),
        ]
        assert rejections[0].raw == "bad,row"


def test_lines_arrow_cannot_split_are_read_one_by_one(tmp_path):
    rows = [ROWS[0], 'e9,"u9\nstill u9",i1,view,1,1', ROWS[1], "e8,u8,i\xff,view,1,1"]
    data = (HEADER + "\n".join(rows) + "\n").encode().replace("\xff".encode(), b"\xff")
    path = tmp_path / "e.csv"
    path.write_bytes(data)
    _, table, rejections = read(path)
    assert table.column("event_id").to_pylist() == ["e1", "e2"]
    lines = {r.location["line"]: r.reason for r in rejections}
    assert set(lines) == {3, 4, 6}
    assert lines[6] == "not valid UTF-8"
    assert lines[3].startswith("malformed line")
    assert lines[4] == "wrong column count: 5 fields, expected 6"


def test_jsonl_bad_lines(tmp_path):
    good = '{"user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": 1704067200}'
    mixed = '{"user_id": 5, "item_id": "i1", "event_type": "view", "timestamp": "2024-01-01"}'
    path = write(tmp_path / "e.jsonl", "\n".join([good, "{oops", "", "[1, 2]", mixed, "  "]) + "\n")
    _, table, rejections = read(path)
    assert table.column("user_id").to_pylist() == ["u1", "5"]
    assert [(r.location["line"], r.reason.split(":")[0]) for r in rejections] == [
        (2, "invalid JSON"),
        (4, "not a JSON object"),
    ]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("u.data", "1\t10\t4\t881250949\n", "ml-100k"),
        ("u1.base", "1\t10\t4\t881250949\n", "ml-100k"),
        ("ratings.dat", "1::10::4::881250949\n", "ml-dat"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.5,881250949\n", "ml-csv"),
        ("events.csv", HEADER + ROWS[0] + "\n", "csv"),
        ("events.txt", HEADER + ROWS[0] + "\n", "csv"),
        ("events", '{"user_id": "u"}\n', "jsonl"),
        ("events.log", "a\tb\n", "tsv"),
    ],
)
def test_movielens_text_formats_and_detection(tmp_path, name, text, expected):
    for gz in (False, True):
        path = write(tmp_path / (name + (".gz" if gz else "")), text, gz)
        assert detect_format(path) == expected
    if expected.startswith("ml-"):
        _, table, rejections = read(path)
        assert not rejections
        row = table.to_pylist()[0]
        assert (row["user_id"], row["item_id"], row["event_type"]) == ("1", "10", "rating")
        assert row["value"] == (4.5 if expected == "ml-csv" else 4.0)
        assert row["timestamp"].timestamp() == 881250949


def test_explicit_format_overrides_detection(tmp_path):
    path = write(tmp_path / "ratings.txt", "1::10::4::881250949\n")
    _, table, _ = read(path, format="ml-dat")
    assert table.num_rows == 1
    with pytest.raises(RecforgeError, match="unknown format 'xml'"):
        Source(path, format="xml")


def test_unreadable_files(tmp_path):
    with pytest.raises(UnreadableSourceError, match="no such file"):
        Source(tmp_path / "missing.csv")
    with pytest.raises(UnreadableSourceError, match="is a directory"):
        Source(tmp_path)
    binary = tmp_path / "blob.csv"
    binary.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(UnreadableSourceError, match=r"no column 'user_id'.*'\\x00"):
        read(binary)  # NUL bytes alone do not make a file unreadable (issue 14): no header does
    fake = write(tmp_path / "fake.parquet", "not parquet at all")
    with pytest.raises(UnreadableSourceError, match="not a Parquet file"):
        Source(fake)
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress((HEADER + ROWS[0] + "\n").encode() * 1000)[:200])
    with pytest.raises(UnreadableSourceError, match="cannot be read"):
        read(broken)
    wrong = write(tmp_path / "cols.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(UnreadableSourceError, match=r"no column 'user_id'.*--map user_id=COLUMN"):
        read(wrong)
    empty = write(tmp_path / "empty.csv", "")
    with pytest.raises(UnreadableSourceError, match="empty file"):
        read(empty)


@pytest.mark.datasets
def test_real_ml_100k():
    source, table, rejections = read(dataset_path("ml-100k", "u.data.gz"), chunk_rows=30_000)
    assert source.format.name == "ml-100k" and not rejections
    assert table.num_rows == 100_000
    assert pc.count_distinct(table.column("user_id")).as_py() == 943
    assert pc.count_distinct(table.column("item_id")).as_py() == 1682
    assert set(table.column("value").to_pylist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert table.slice(0, 1).to_pylist()[0]["timestamp"].timestamp() == 881250949


@pytest.mark.datasets
def test_real_ml_1m_pairs():
    source, table, rejections = read(dataset_path("ml-1m-pairs", "ratings.parquet.gz"), chunk_rows=400_000)
    assert source.format.name == "ml-pairs" and not rejections
    assert table.num_rows == 1_000_209
    assert pc.count_distinct(table.column("user_id")).as_py() == 6040
    assert pc.count_distinct(table.column("item_id")).as_py() == 3706
    assert pc.unique(table.column("event_type")).to_pylist() == ["view"]
    assert pc.unique(table.column("timestamp")).to_pylist() == [FIXED_TIMESTAMP]
    assert np.all(table.column("value").to_numpy() == 1.0)
    assert table.slice(table.num_rows - 1).to_pylist()[0]["user_id"] == "6040"


def test_jsonl_with_nested_fields(tmp_path):
    row = (
        '{{"user_id": {user}, "item_id": "i1", "event_type": "view", '
        '"timestamp": 1704067200, "meta": {{"a": 1}}}}'
    )
    path = write(tmp_path / "e.jsonl", "\n".join([row.format(user='"u1"'), row.format(user='"u2"')]))
    _, table, rejections = read(path)
    assert table.column("user_id").to_pylist() == ["u1", "u2"] and not rejections
    path = write(tmp_path / "f.jsonl", "\n".join([row.format(user='{"x": 1}'), row.format(user='{"x": 2}')]))
    _, table, rejections = read(path)
    assert table.num_rows == 0
    assert [r.reason for r in rejections] == ["user_id must be a string or a number"] * 2


# issue 14: one poisoned line is one quarantined line ------------------------------------------
GOOD_JSON = '{{"user_id": "{user}", "item_id": "i1", "event_type": "view", "timestamp": 1704067200}}'


def test_a_jsonl_line_nested_5000_deep_is_one_bad_line(tmp_path):
    deep = '{"user_id": ' + "[" * 5000 + "]" * 5000 + ', "item_id": "i1", "event_type": "view"}'
    lines = [GOOD_JSON.format(user="u1"), deep, GOOD_JSON.format(user="u2")]
    path = write(tmp_path / "e.jsonl", "\n".join(lines) + "\n")
    _, table, rejections = read(path)
    assert table.column("user_id").to_pylist() == ["u1", "u2"]
    assert [(r.location["line"], r.reason) for r in rejections] == [(2, "invalid JSON: nested too deeply")]


def test_nul_bytes_reject_their_row_not_the_file(tmp_path):
    rows = [ROWS[0], "e5,u\x005,i1,view,1,1704067200", ROWS[1], "e6,u6,i\x00,view,1,1704067200", ROWS[2]]
    path = write(tmp_path / "e.csv", HEADER + "\n".join(rows) + "\n")
    assert detect_format(path) == "csv"
    _, table, rejections = read(path)
    assert table.column("event_id").to_pylist() == ["e1", "e2", "e3"]
    assert [(r.location["line"], r.reason) for r in rejections] == [
        (3, "user_id holds a control character"),
        (5, "item_id holds a control character"),
    ]


def test_invalid_utf8_is_a_bad_row_in_every_format(tmp_path):
    bad_json = GOOD_JSON.format(user="u\udcff").encode("utf-8", "surrogateescape")
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_bytes(b"\n".join([GOOD_JSON.format(user="u1").encode(), bad_json]) + b"\n")
    _, table, rejections = read(jsonl)
    assert table.column("user_id").to_pylist() == ["u1"]
    assert [(r.location["line"], r.reason) for r in rejections] == [(2, "not valid UTF-8")]

    dat = tmp_path / "ratings.dat"
    dat.write_bytes(b"1::10::4::881250949\n\xff2::10::4::881250949\n3::10::4::881250949\n")
    _, table, rejections = read(dat)  # the line-by-line path splits '::' as the fast path does
    assert table.column("user_id").to_pylist() == ["1", "3"]
    assert [(r.location["line"], r.reason) for r in rejections] == [(2, "not valid UTF-8")]

    binary = pa.array([b"u1", b"u\xff", b"u3"], pa.binary())
    events = pa.table(
        {
            "user_id": binary.view(pa.string()),
            "item_id": ["i1", "i1", "i1"],
            "event_type": ["view"] * 3,
            "timestamp": [1704067200] * 3,
        }
    )
    parquet = tmp_path / "e.parquet"
    pq.write_table(events, parquet)
    _, table, rejections = read(parquet)
    assert table.column("user_id").to_pylist() == ["u1", "u3"]
    assert [(r.location["row"], r.reason, r.raw["user_id"]) for r in rejections] == [
        (2, "not valid UTF-8", "u\ufffd")
    ]
    assert rejections[0].to_json()  # the quarantine can write it
