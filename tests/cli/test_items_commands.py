"""``recforge generate`` (with its catalog), ``items ingest | show | stats`` and ``export`` (issue 15)."""

import json

import pyarrow.parquet as pq

from recforge.artifacts import ModelRegistry
from recforge.catalog import Catalog
from recforge.cli.main import main


def run(capsys, *args):
    code = main([*args])
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_ingest_items_train_export(tmp_path, capsys):
    home = str(tmp_path / "home")
    events = tmp_path / "events.parquet"
    sizes = ["--users", "300", "--items", "80", "--events", "8000", "--categories", "4"]
    code, out, _ = run(capsys, "generate", "--out", str(events), *sizes, "--new-items", "5", "--seed", "1")
    assert code == 0 and ", 85 items to" in out
    items = tmp_path / "events.items.csv"
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,available\nx1,maybe\nx2,false\n")
    code, out, _ = run(capsys, "--home", home, "items", "ingest", str(items), str(bad))
    assert code == 0 and f"{items}: 85 items upserted (85 new), 0 rejected" in out
    assert f"{bad}: 1 items upserted (1 new), 1 rejected" in out and "rejected rows: " in out
    code, out, _ = run(capsys, "--home", home, "items", "stats", "--json")
    stats = json.loads(out)
    assert stats["items"] == 86 and sum(stats["categories"].values()) == 85
    assert stats["available"] == int(Catalog.read(items).available.sum())
    code, out, _ = run(capsys, "--home", home, "items", "show", "i3")
    record = json.loads(out)
    assert record["item_id"] == "i3" and set(record["attributes"]) == {"title", "brand", "price", "image_url"}
    code, _, err = run(capsys, "--home", home, "items", "show", "nope")
    assert code == 2 and "no item 'nope'" in err
    code, _, err = run(capsys, "--home", home, "items", "ingest", "--strict", str(bad))
    assert code == 2 and "nothing stored (--strict)" in err

    for args in (("ingest", str(events)), ("build",), ("train", "--model", "als")):
        code, out, err = run(capsys, "--home", home, *args)
        assert code == 0, err
    assert "x 86 items" in out  # every catalog item is listed
    registry = ModelRegistry(home)
    registry.publish(registry.list()[-1].version)
    category = sorted(stats["categories"])[0]
    lists, similar = tmp_path / "lists.parquet", tmp_path / "similar.parquet"
    code, out, err = run(capsys, "--home", home, "export", "--out", str(lists), "--category", category,
                         "--k", "5", "--similar", str(similar))  # fmt: skip
    assert code == 0, err
    table = pq.read_table(lists).to_pylist()
    members = {
        p.item_id for p in Catalog.read(items).patches() if p.categories == (category,) and p.available
    }
    assert table and {row["item_id"] for row in table} <= members
    assert [row["rank"] for row in table[:5]] == [1, 2, 3, 4, 5]
    assert {row["similar_item_id"] for row in pq.read_table(similar).to_pylist()} <= members
