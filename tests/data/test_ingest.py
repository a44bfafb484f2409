"""Ingestion end to end: the issue's acceptance test, strict mode, quarantine files, records."""

import json

import numpy as np
import pytest

from recforge.config import Config
from recforge.data.ingest import ingest_file
from recforge.data.store import EventStore
from recforge.errors import RecforgeError, UnreadableSourceError

HEADER = "event_id,user_id,item_id,event_type,value,timestamp"
#: Every kind of bad row, with the start of the reason it must be quarantined with.
BAD = {
    "missing user": ("{id},,i1,view,1,1704067200", "missing user_id"),
    "missing item": ("{id},u1,,like,1,1704067200", "missing item_id"),
    "long user": ("{id}," + "u" * 300 + ",i1,view,1,1704067200", "user_id longer than 256"),
    "long item": ("{id},u1," + "i" * 257 + ",view,1,1704067200", "item_id longer than 256"),
    "bad time": ("{id},u1,i1,view,1,next tuesday", "unparsable timestamp"),
    "no time": ("{id},u1,i1,view,1,", "missing timestamp"),
    "text value": ("{id},u1,i1,view,lots,1704067200", "value 'lots' is not a number"),
    "nan value": ("{id},u1,i1,view,nan,1704067200", "value 'nan' is not finite"),
    "inf value": ("{id},u1,i1,view,-inf,1704067200", "value '-inf' is not finite"),
    "negative": ("{id},u1,i1,cart,-3,1704067200", "negative value -3"),
    "unknown type": ("{id},u1,i1,teleport,1,1704067200", "unknown event_type 'teleport'"),
    "few columns": ("{id},u1,i1,view,1", "wrong column count: 5 fields"),
    "many columns": ("{id},u1,i1,view,1,1704067200,extra", "wrong column count: 7 fields"),
}


def test_one_percent_malformed_rows_of_every_kind(tmp_path):
    rng = np.random.default_rng(0)
    n_good, per_kind = 2574, 2  # 26 bad rows: 1% of 2600
    kinds = [kind for kind in BAD for _ in range(per_kind)]
    rows = [f"g{j},u{j % 50},i{j % 30},view,1,{1704067200 + j}" for j in range(n_good)]
    expected = {}
    for k, position in enumerate(sorted(rng.choice(n_good, len(kinds), replace=False))[::-1]):
        template, reason = BAD[kinds[k]]
        rows.insert(int(position), template.format(id=f"b{k}"))
        expected[f"b{k}"] = reason
    path = tmp_path / "events.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    lines = {row.split(",")[0]: number for number, row in enumerate(rows, start=2)}

    store = EventStore(tmp_path / "home")
    config = Config()
    config.data.chunk_rows = 500  # several chunks
    report = ingest_file(path, store, config)

    assert (report.rows, report.accepted, report.rejected, report.duplicates) == (2600, 2574, 26, 0)
    stored = set(store.scan(["event_id"]).column("event_id").to_pylist())
    assert stored == {f"g{j}" for j in range(n_good)}
    quarantined = [json.loads(line) for line in report.quarantine.read_text().splitlines()]
    assert report.quarantine.parent == tmp_path / "home" / "quarantine"
    assert report.quarantine.name.startswith("events.csv.")
    assert len(quarantined) == 26
    for record in quarantined:
        event_id = record["raw"].split(",")[0]
        assert record["source"] == str(path)
        assert record["line"] == lines[event_id]
        assert record["reason"].startswith(expected[event_id]), record

    again = ingest_file(path, store, config)  # idempotent
    assert (again.accepted, again.rejected, again.duplicates) == (0, 26, 2574)


def test_strict_stores_nothing_from_a_file_with_a_bad_row(tmp_path):
    path = tmp_path / "e.csv"
    rows = [f"g{j},u1,i1,view,1,{1704067200 + j}" for j in range(30)]
    rows[25] = "g25,u1,i1,view,1,whenever"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    store = EventStore(tmp_path / "home")
    config = Config()
    config.data.chunk_rows = 10  # the bad row comes after good chunks
    with pytest.raises(RecforgeError, match=r"1 bad rows \(first at line 27: unparsable timestamp"):
        ingest_file(path, store, config, strict=True)
    assert store.stats()["events"] == 0
    assert not [p for p in (tmp_path / "home" / "events").iterdir() if p.name.startswith(".tmp-")]
    assert len(list((tmp_path / "home" / "quarantine").iterdir())) == 1
    rows[25] = "g25,u1,i1,view,1,1704067225"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    assert ingest_file(path, store, config, strict=True).accepted == 30


def test_unreadable_file_stores_nothing(tmp_path):
    store = EventStore(tmp_path)
    with pytest.raises(UnreadableSourceError, match="no such file"):
        ingest_file(tmp_path / "nope.csv", store, Config())
    assert store.stats()["events"] == 0


def test_files_may_name_the_recommendation_events_followed(tmp_path):
    """Issue 18: a recommendation_id column is read, stored and optional per row."""
    path = tmp_path / "clicks.csv"
    path.write_text(
        f"{HEADER},recommendation_id\ne1,u1,i1,view,1,1704067200,r5\ne2,u1,i2,view,1,1704067201,\n"
    )
    ingest_file(path, EventStore(tmp_path), Config())
    stored = EventStore(tmp_path).scan(["event_id", "recommendation_id"]).to_pylist()
    assert sorted(stored, key=lambda r: r["event_id"]) == [
        {"event_id": "e1", "recommendation_id": "r5"},
        {"event_id": "e2", "recommendation_id": None},
    ]
