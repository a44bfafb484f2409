"""Validation: every rule, the formats timestamps come in, and in-memory records."""

import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.config import DataConfig
from recforge.data import validation
from recforge.data.schema import EVENT_SCHEMA
from recforge.data.validation import validate_records, validate_table

GOOD = {
    "event_id": "e1",
    "user_id": "u1",
    "item_id": "i1",
    "event_type": "view",
    "value": "1",
    "timestamp": "2024-01-01T00:00:00Z",
}


def check(rows, config=None):
    """Validate rows of strings; returns (good table, {row index: reason})."""
    names = [*GOOD, "recommendation_id"]
    table = pa.table({k: pa.array([r.get(k) for r in rows], pa.large_string()) for k in names})
    good, rejected = validate_table(
        table, config or DataConfig(), source="t", locations={"line": np.arange(len(rows))}
    )
    return good, {r.location["line"]: r.reason for r in rejected}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"user_id": None}, "missing user_id"),
        ({"user_id": ""}, "missing user_id"),
        ({"item_id": None}, "missing item_id"),
        ({"user_id": "u" * 257}, "user_id longer than 256 characters"),
        ({"item_id": "é" * 257}, "item_id longer than 256 characters"),
        ({"event_id": "e" * 257}, "event_id longer than 256 characters"),
        ({"recommendation_id": "r" * 257}, "recommendation_id longer than 256 characters"),
        ({"event_type": None}, "missing event_type"),
        ({"event_type": "teleport"}, "unknown event_type 'teleport'"),
        ({"value": "abc"}, "value 'abc' is not a number"),
        ({"value": "NaN"}, "value 'NaN' is not finite"),
        ({"value": "inf"}, "value 'inf' is not finite"),
        ({"value": "-2"}, "negative value -2 for event_type 'view'"),
        ({"timestamp": None}, "missing timestamp"),
        ({"timestamp": " "}, "missing timestamp"),
        ({"timestamp": "yesterday"}, "unparsable timestamp 'yesterday'"),
        ({"timestamp": "2024-02-30T00:00:00"}, "unparsable timestamp '2024-02-30T00:00:00'"),
        ({"timestamp": "1e20"}, "timestamp '1e20' is more than data.max_future_seconds (300 s)"),
        # issue 14: one event from the future, ids with control characters, huge values
        ({"timestamp": "9999-12-31T00:00:00Z"}, "timestamp '9999-12-31T00:00:00Z' is more than"),
        ({"timestamp": "-1"}, "timestamp '-1' is before data.min_timestamp 1970-01-01T00:00:00Z"),
        ({"user_id": "u\x001"}, "user_id holds a control character"),
        ({"item_id": "i\x1b[31m"}, "item_id holds a control character"),
        ({"event_id": "e\u0085"}, "event_id holds a control character"),
        ({"event_type": "view\x00"}, "event_type holds a control character"),
        ({"value": "1e39"}, "value 1e+39 is larger than data.max_value 1e+06"),
        ({"value": "-2e6"}, "value -2e+06 is larger than data.max_value 1e+06"),
    ],
)
def test_each_rule_rejects_with_its_reason(change, reason):
    good, rejected = check([GOOD, {**GOOD, **change}, GOOD])
    assert good.num_rows == 2
    assert list(rejected) == [1]
    assert rejected[1].startswith(reason)


def test_all_reasons_of_a_row_are_reported():
    _, rejected = check([{**GOOD, "user_id": "", "value": "x", "timestamp": "soon"}])
    assert rejected[0].split("; ") == [
        "missing user_id",
        "value 'x' is not a number",
        "unparsable timestamp 'soon' (expected ISO 8601 or Unix seconds)",
    ]


def test_policy_settings():
    keep = DataConfig(unknown_event_type="keep", allow_negative=["dislike"])
    good, rejected = check([{**GOOD, "event_type": "dislike", "value": "-1"}, {**GOOD, "value": "-1"}], keep)
    assert good.column("event_type").to_pylist() == ["dislike"] and list(rejected) == [1]
    short = DataConfig(max_id_length=3)
    assert list(check([{**GOOD, "user_id": "abcd"}, GOOD], short)[1]) == [0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T02:00:00+02:00", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01 00:00:00", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T00:00:00.5Z", datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
        ("2024-01-01T00:00:00.123456789+00:00", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("1704067200", datetime(2024, 1, 1, tzinfo=UTC)),
        ("1704067200.25", datetime(2024, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_timestamp_formats(text, expected):
    # a garbage row beside it forces the per-format path, not only the all-clean fast path
    good, rejected = check([{**GOOD, "timestamp": text}, {**GOOD, "timestamp": "garbage"}])
    assert good.column("timestamp").to_pylist() == [expected]
    good, _ = check([{**GOOD, "timestamp": text}])
    assert good.column("timestamp").to_pylist() == [expected]


def test_typed_columns_from_parquet_or_json():
    table = pa.table(
        {
            "user_id": pa.array([1, 2, None]),
            "item_id": pa.array(["a", "b", "c"]),
            "event_type": pa.array(["view"] * 3),
            "value": pa.array([2.5, None, float("nan")]),
            "timestamp": pa.array([1_704_067_200, 1_704_067_201, 1_704_067_202]),
        }
    )
    good, rejected = validate_table(table, DataConfig(), source="t", locations={"row": np.arange(3)})
    assert good.schema == EVENT_SCHEMA
    assert good.column("user_id").to_pylist() == ["1", "2"]
    assert good.column("value").to_pylist() == [2.5, 1.0]  # a missing value is the default 1.0
    assert good.column("event_id").null_count == 2
    assert [(r.location, r.reason) for r in rejected] == [
        ({"row": 2}, "missing user_id; value nan is not finite")
    ]


def test_validate_records_reports_indexes_and_wrong_types():
    records = [
        {"user_id": "u1", "item_id": "i1", "event_type": "like", "timestamp": 1704067200},
        "not an object",
        {"user_id": ["u"], "item_id": "i1", "event_type": "view", "timestamp": "2024-01-01"},
        {"user_id": "u2", "item_id": 7, "event_type": "view", "value": True, "timestamp": "2024-01-01"},
        {"user_id": "u3", "item_id": "i3", "event_type": "cart", "value": 3, "timestamp": 1.5e9, "x": 1},
    ]
    good, rejected = validate_records(records, DataConfig(), source="http")
    assert good.column("user_id").to_pylist() == ["u1", "u3"]
    assert good.column("value").to_pylist() == [1.0, 3.0]
    assert [(r.location, r.reason) for r in rejected] == [
        ({"index": 1}, "not a JSON object"),
        ({"index": 2}, "user_id must be a string or a number"),
        ({"index": 3}, "value 'true' is not a number"),
    ]
    assert rejected[0].raw == "not an object"
    assert '"source": "http", "index": 1' in rejected[0].to_json()
    offsets = {"partition": np.array([0, 0, 1, 1, 1]), "offset": np.arange(10, 15)}
    _, rejected = validate_records(records, DataConfig(), source="kafka", locations=offsets)
    assert rejected[0].location == {"partition": 0, "offset": 11}


def test_recommendation_id_is_optional_and_kept():
    """Issue 18: events may name the recommendation they followed; without it they read null."""
    good, rejected = check([GOOD, {**GOOD, "event_id": "e2", "recommendation_id": "r7"}])
    assert not rejected
    assert good.column("recommendation_id").to_pylist() == [None, "r7"]
    records = [
        {"user_id": "u", "item_id": "i", "event_type": "view", "timestamp": 1, "recommendation_id": "r1"},
        {"user_id": "u", "item_id": "i", "event_type": "view", "timestamp": 2, "recommendation_id": ["r"]},
    ]
    good, rejected = validate_records(records, DataConfig(), source="http")
    assert good.column("recommendation_id").to_pylist() == ["r1"]
    assert [r.reason for r in rejected] == ["recommendation_id must be a string or a number"]


def test_the_accepted_time_window_moves_with_the_clock_and_the_settings():
    now = round(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    config = DataConfig(max_future_seconds=60.0, min_timestamp="2020-01-01")
    rows = [
        {**GOOD, "timestamp": "2026-01-01T00:00:59Z"},  # inside the skew allowed
        {**GOOD, "timestamp": "2026-01-01T00:01:01Z"},  # 61 s ahead
        {**GOOD, "timestamp": "2019-12-31T23:59:59Z"},  # before min_timestamp
        {**GOOD, "timestamp": "2020-01-01T00:00:00Z"},  # the first accepted instant
    ]
    table = pa.table({k: pa.array([r.get(k) for r in rows], pa.large_string()) for k in GOOD})
    good, rejected = validate_table(table, config, source="t", locations={"line": np.arange(4)}, now_us=now)
    assert good.num_rows == 2
    assert {r.location["line"]: r.reason.split(" is ")[1][:10] for r in rejected} == {
        1: "more than ",
        2: "before dat",
    }
    # a space or a non-ASCII letter is no control character
    good, rejected = check([{**GOOD, "user_id": "a b", "item_id": "é\u00a0ü"}])
    assert good.num_rows == 1 and not rejected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=8)), min_size=1, max_size=20))
def test_the_control_character_scan_agrees_with_the_regex(texts):
    """The byte scan of the data buffer finds exactly the rows the regex finds, for any text
    (C0, DEL, C1 and their UTF-8 neighbours), also in a slice of a buffer whose other rows
    hold control characters."""
    alone = pa.array(texts, pa.large_string())
    sliced = pa.array(["\x85\x00", *texts, "\x7f"], pa.large_string()).slice(1, len(texts))
    for strings in (alone, sliced):
        expected = pc.match_substring_regex(strings, validation._CONTROL).fill_null(False).to_pylist()
        assert validation._control(strings).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(raw=st.text())
def test_a_rejection_is_one_line_for_every_way_of_splitting_lines(raw):
    """A quarantine record is one line also for ``str.splitlines`` (which breaks at U+2028 and
    U+0085, raw in JSON strings), and reads back as written."""
    rejection = validation.Rejection("events.jsonl", {"line": 3}, "invalid JSON", raw + "\u2028\x85\u2029")
    line = rejection.to_json()
    assert len(line.splitlines()) == 1
    assert json.loads(line) == {
        "source": "events.jsonl",
        "line": 3,
        "reason": "invalid JSON",
        "raw": raw + "\u2028\x85\u2029",
    }
