"""Property-based fuzzing of the file boundary (issue 14): files mixing valid rows with every kind
of bad row, blank lines and random bytes. Whatever Hypothesis draws, the store holds exactly the
valid rows, every bad line is quarantined once with its line number, and nothing raises.

Each example is a fresh event store on disk; ``MAX_EXAMPLES`` per format keeps the suite quick.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recforge.config import Config
from recforge.data.ingest import ingest_file
from recforge.data.store import EventStore

MAX_EXAMPLES = 120
TYPES = ("view", "like", "cart", "purchase", "rating")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Id characters: any printable text but what CSV quotes (, " line breaks) and control characters.
id_text = st.text(
    st.characters(
        blacklist_categories=("Cc", "Cs"),
        blacklist_characters=',"\r\n\u2028\u2029\x85',
        max_codepoint=0x2FFFF,
    ),
    min_size=1,
    max_size=12,
)
when = st.datetimes(datetime(1990, 1, 1), datetime(2025, 12, 31)).map(lambda d: d.replace(tzinfo=UTC))
value = st.floats(min_value=0.0, max_value=1e6, allow_nan=False).map(lambda v: round(v, 3))


@st.composite
def valid_event(draw: st.DrawFn) -> dict:
    return {
        "user_id": draw(id_text),
        "item_id": draw(id_text),
        "event_type": draw(st.sampled_from(TYPES)),
        "value": draw(value),
        "timestamp": draw(when),
    }


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


#: How to spoil a valid event, for both formats: the field and the bad value it gets.
SPOILERS = [
    ("user_id", ""),
    ("item_id", ""),
    ("user_id", "u" * 257),
    ("item_id", "a\x00b"),
    ("user_id", "x\x1by"),
    ("event_type", "teleport"),
    ("value", "lots"),
    ("value", "nan"),
    ("value", "-inf"),
    ("value", "-3"),
    ("value", "2e6"),
    ("timestamp", "next tuesday"),
    ("timestamp", "2024-02-30"),
    ("timestamp", "9999-12-31T00:00:00Z"),
    ("timestamp", "1e20"),
    ("timestamp", ""),
]

#: Random bytes that can never be an event: no field separator, no line break, not blank, and
#: never a JSON object (they start with a letter JSON does not).
noise = st.binary(min_size=1, max_size=40).map(lambda b: b"x" + bytes(c for c in b if c not in b',\n\r{"'))


@st.composite
def rows(draw: st.DrawFn, kind: str) -> list[tuple[str, object]]:
    """A file's lines: ``("valid", event)``, ``("bad", bytes)``, ``("blank", bytes)``."""
    out: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(1, 25))):
        choice = draw(st.sampled_from(("valid", "valid", "spoiled", "noise", "broken", "blank")))
        if choice == "valid":
            out.append(("valid", draw(valid_event())))
        elif choice == "spoiled":
            field, bad = draw(st.sampled_from(SPOILERS))
            out.append(("bad", encode({**draw(valid_event()), field: bad}, kind)))
        elif choice == "noise":
            out.append(("bad", draw(noise)))
        elif choice == "broken":
            out.append(("bad", draw(st.sampled_from(BROKEN[kind]))))
        else:
            out.append(("blank", b"" if kind == "csv" else draw(st.sampled_from([b"", b"  ", b"\t "]))))
    return out


BROKEN = {
    "csv": [
        b"e,u,i,view,1",  # a field short
        b"e,u,i,view,1,2024-01-01,extra",
        b'e,"u,i,view,1,2024-01-01',  # a quote never closed
        b"e,u\xff,i,view,1,2024-01-01",  # invalid UTF-8
    ],
    "jsonl": [
        b"{broken",
        b"[1, 2]",
        b"42",
        b'{"user_id": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'{"user_id": "u\xff", "item_id": "i", "event_type": "view", "timestamp": 1}',
        b'{"user_id": ["u"], "item_id": "i", "event_type": "view", "timestamp": 1704067200}',
        b'{"user_id": "u", "item_id": {"a": 1}, "event_type": "view", "timestamp": 1704067200}',
    ],
}


def encode(event: dict, kind: str, event_id: str = "") -> bytes:
    shown = {
        **event,
        "timestamp": iso(event["timestamp"])
        if isinstance(event["timestamp"], datetime)
        else event["timestamp"],
    }
    if kind == "csv":
        fields = [
            event_id,
            shown["user_id"],
            shown["item_id"],
            shown["event_type"],
            str(shown["value"]),
            shown["timestamp"],
        ]
        return ",".join(fields).encode("utf-8")
    return json.dumps({"event_id": event_id or None, **shown}, ensure_ascii=False).encode("utf-8")


def check(lines: list[tuple[str, object]], kind: str) -> None:
    body, valid, bad_lines = [], {}, set()
    line = 2 if kind == "csv" else 1
    for n, (what, row) in enumerate(lines):
        if what == "valid":
            assert isinstance(row, dict)
            valid[f"v{n}"] = row
            body.append(encode(row, kind, f"v{n}"))
        else:
            assert isinstance(row, bytes)
            body.append(row)
            if what == "bad":
                bad_lines.add(line)
        line += 1
    header = [b"event_id,user_id,item_id,event_type,value,timestamp"] if kind == "csv" else []
    with tempfile.TemporaryDirectory(prefix="recforge-fuzz-") as tmp:
        path = Path(tmp) / f"events.{kind}"
        path.write_bytes(b"\n".join(header + body) + b"\n")
        store = EventStore(Path(tmp) / "home")
        report = ingest_file(path, store, Config(), format=kind)
        stored = {row["event_id"]: row for row in store.scan().to_pylist()}
        quarantined = []
        if report.quarantine is not None:
            quarantined = [json.loads(text) for text in report.quarantine.read_text().splitlines()]
    assert report.accepted == len(valid) and report.rejected == len(bad_lines)
    assert set(stored) == set(valid)
    for event_id, event in valid.items():
        got = stored[event_id]
        assert (got["user_id"], got["item_id"], got["event_type"]) == (
            event["user_id"],
            event["item_id"],
            event["event_type"],
        )
        assert got["value"] == float(event["value"]) and got["timestamp"] == event["timestamp"]
    assert sorted(record["line"] for record in quarantined) == sorted(bad_lines)
    assert all(record["reason"] for record in quarantined)


@settings(
    max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(rows("csv"))
def test_csv_files_keep_exactly_the_valid_rows(lines):
    check(lines, "csv")


@settings(
    max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(rows("jsonl"))
def test_jsonl_files_keep_exactly_the_valid_rows(lines):
    check(lines, "jsonl")


def test_the_window_is_what_the_generator_stays_inside():
    """The valid timestamps drawn are inside the accepted window (a guard on the oracle)."""
    assert datetime(2025, 12, 31, tzinfo=UTC) < datetime.now(UTC) - timedelta(seconds=1)
    assert datetime(1990, 1, 1, tzinfo=UTC) > EPOCH
