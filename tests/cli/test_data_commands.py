"""The data commands end to end through ``recforge.cli.main.main``."""

import json

import pytest

from recforge.cli.main import main
from recforge.data.store import EventStore


def run(capsys, *args):
    code = main([*args])
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_ingest_build_stats_compact(tmp_path, capsys):
    home = str(tmp_path / "home")
    data = tmp_path / "events.csv.gz"
    code, out, _ = run(capsys, "generate", "--out", str(data), "--users", "200", "--items", "50",
                       "--events", "5000", "--days", "7", "--seed", "4")  # fmt: skip
    assert code == 0 and "wrote 5,000 events" in out
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "event_id,user_id,item_id,event_type,value,timestamp\nx1,u1,i1,view,1,1704067200\nx2,,i1,view,1,1\n"
    )

    code, out, _ = run(capsys, "--home", home, "ingest", str(data), str(bad))
    assert code == 0
    assert f"{data}: 5,000 accepted, 0 rejected, 0 duplicate" in out
    assert f"{bad}: 1 accepted, 1 rejected, 0 duplicate" in out
    assert "rejected rows: " in out and "quarantine" in out

    code, out, _ = run(capsys, "--home", home, "ingest", "--json", str(data))
    assert code == 0 and json.loads(out)["duplicates"] == 5000

    code, out, _ = run(capsys, "--home", home, "build")
    assert code == 0 and "from 5,001 events" in out and (tmp_path / "home" / "interactions").is_symlink()

    code, out, _ = run(capsys, "--home", home, "events", "stats", "--json")
    stats = json.loads(out)
    assert code == 0 and stats["events"] == 5001 and stats["segments"] == 2
    assert {"events", "users", "items", "first", "last"} <= set(stats)

    code, out, _ = run(capsys, "--home", home, "events", "compact")
    assert code == 0 and "merged 2 segments into 1" in out
    code, out, _ = run(capsys, "--home", home, "events", "stats")
    assert "events: 5,001" in out and "segments: 1" in out


def test_mapping_and_format_flags(tmp_path, capsys):
    path = tmp_path / "ratings.txt"
    path.write_text("who;what\n")  # wrong delimiter for csv: a missing column, not a crash
    code, _, err = run(capsys, "--home", str(tmp_path), "ingest", str(path), "--format", "csv")
    assert code == 2 and "no column 'user_id'" in err
    path.write_text("userId,movieId,rating,timestamp\n1,2,4.5,881250949\n")
    code, out, _ = run(capsys, "--home", str(tmp_path), "ingest", str(path), "--format", "ml-csv")
    assert code == 0 and "1 accepted" in out
    mapped = tmp_path / "m.csv"
    mapped.write_text("u,i,t,ts\nu1,i1,view,1704067200\n")
    code, out, _ = run(capsys, "--home", str(tmp_path), "ingest", str(mapped),
                       "--map", "user_id=u,item_id=i,event_type=t,timestamp=ts")  # fmt: skip
    assert code == 0 and "1 accepted" in out


@pytest.mark.parametrize("content", [None, b"\x00\x01\x02binary\xff" * 100, b"PAR1 not really"])
def test_unreadable_files_exit_2_with_one_line(tmp_path, capsys, content):
    path = tmp_path / "input.parquet"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run(capsys, "--home", str(tmp_path), "ingest", str(path))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("recforge: error: ")
    assert "Traceback" not in err


def test_strict_exits_2_and_stores_nothing(tmp_path, capsys):
    path = tmp_path / "e.csv"
    path.write_text(
        "event_id,user_id,item_id,event_type,value,timestamp\nx1,u1,i1,view,1,1\nx2,u1,i1,vue,1,1\n"
    )
    code, _, err = run(capsys, "--home", str(tmp_path), "ingest", "--strict", str(path))
    assert code == 2 and "line 3: unknown event_type 'vue'" in err and "nothing stored" in err
    code, out, _ = run(capsys, "--home", str(tmp_path), "events", "stats", "--json")
    assert json.loads(out)["events"] == 0


def test_help_everywhere(capsys):
    for command in (
        ["generate"],
        ["ingest"],
        ["build"],
        ["events"],
        ["events", "stats"],
        ["events", "compact"],
    ):
        code, out, _ = run(capsys, *command, "--help")
        assert code == 0 and "Usage" in out


def test_ingest_help_shows_the_file_options(capsys):
    assert main(["ingest", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--map", "--format", "--strict", "--event-type", "--value"):
        assert option in out


def test_the_readme_map_example_works_as_written(tmp_path, capsys):
    """README: ``recforge ingest clicks.csv --map user_id=uid,item_id=sku,timestamp=ts --event-type
    view --strict``: a file of clicks with its own column names and no event type."""
    clicks = tmp_path / "clicks.csv"
    clicks.write_text("uid,sku,ts\nu1,s1,2024-05-01T10:00:00Z\nu2,s1,2024-05-01T10:05:00Z\n")
    home = tmp_path / "home"
    args = ["--map", "user_id=uid,item_id=sku,timestamp=ts", "--event-type", "view", "--strict"]
    assert main(["--home", str(home), "ingest", str(clicks), *args]) == 0
    assert "2 accepted, 0 rejected" in capsys.readouterr().out
    stored = EventStore(home).scan(["event_type", "value"])
    assert stored.column("event_type").to_pylist() == ["view", "view"]
    assert stored.column("value").to_pylist() == [1.0, 1.0]
    assert (
        main(["--home", str(home), "ingest", str(clicks), "--map", "user_id=uid,item_id=sku,timestamp=ts"])
        == 2
    )
    assert "no column 'event_type'" in capsys.readouterr().err
    purchases = tmp_path / "p.csv"
    purchases.write_text("user_id,item_id,timestamp\nu1,s2,2024-05-02T00:00:00Z\n")
    assert (
        main(["--home", str(home), "ingest", str(purchases), "--event-type", "purchase", "--value", "3"]) == 0
    )
    assert EventStore(home).scan(["value"]).column("value").to_pylist()[-1] == 3.0


def test_one_unreadable_file_does_not_stop_the_others(tmp_path, capsys):
    # issue 14: `recforge ingest a b c` with an unreadable b still ingests c, then exits 2
    home = str(tmp_path / "home")
    header = "user_id,item_id,event_type,timestamp\n"
    a = tmp_path / "a.csv"
    a.write_text(header + "u1,i1,view,2024-01-01\n")
    b = tmp_path / "b.parquet"
    b.write_bytes(b"PAR1 not really")
    c = tmp_path / "c.csv"
    c.write_text(header + "u2,i1,view,2024-01-01\nu3,i1,view,2024-01-01\n")
    code, out, err = run(capsys, "--home", home, "ingest", str(a), str(b), str(c))
    assert code == 2
    assert f"{a}: 1 accepted" in out and f"{c}: 2 accepted" in out
    assert err.splitlines()[-2:] == [
        f"recforge: error: {b}: not a Parquet file (Parquet magic bytes not found in footer. Either the "
        "file is corrupted or this is not a parquet file.)",
        f"recforge: 1 of 3 files not ingested: {b}",
    ]
    assert "Traceback" not in err
    code, out, _ = run(capsys, "--home", home, "events", "stats", "--json")
    assert json.loads(out)["events"] == 3
