"""Item files: CSV, JSONL, Parquet with a column mapping, and the MovieLens item files (issue 15)."""

import gzip
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recforge.catalog import Catalog
from recforge.catalog.readers import ItemSource, detect_item_format
from recforge.errors import RecforgeError, UnreadableSourceError
from tests.conftest import dataset_path


def test_csv_categories_attributes_and_numbers(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(
        "item_id,categories,available,created_at,title,price,code\n"
        "a,sneakers|running,true,2024-01-01,Air,99.5,007\n"
        'b,tech,false,,"Phone, black",10,x1\n'
        "c,,,,Plain,,\n"
    )
    catalog = Catalog.read(path)
    assert catalog.item_ids.tolist() == ["a", "b", "c"]
    assert catalog.categories == [("sneakers", "running"), ("tech",), ()]
    assert catalog.available.tolist() == [True, False, True]
    assert catalog.attributes[0] == {"title": "Air", "price": 99.5, "code": "007"}  # not all numbers
    assert catalog.attributes[1] == {"title": "Phone, black", "price": 10, "code": "x1"}
    assert catalog.attributes[2] == {"title": "Plain"}
    assert catalog.created_at_us[0] == int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1e6)


def test_mapping_and_gzip(tmp_path):
    path = tmp_path / "export.tsv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("sku\tcats\tin_stock\tname\nA1\tlife\t0\tLamp\n")
    catalog = Catalog.read(path, mapping={"item_id": "sku", "categories": "cats", "available": "in_stock"})
    assert catalog.item_ids.tolist() == ["A1"] and catalog.categories == [("life",)]
    assert catalog.available.tolist() == [False] and catalog.attributes == [{"name": "Lamp"}]


def test_jsonl_and_parquet(tmp_path):
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(
        '{"item_id": "a", "categories": ["x"], "attributes": {"title": "A"}, "brand": "B"}\n\n'
        '{"item_id": "b", "available": false}\n'
    )
    catalog = Catalog.read(jsonl)
    assert catalog.attributes[0] == {"title": "A", "brand": "B"} and catalog.available.tolist() == [
        True,
        False,
    ]
    table = pa.table({"id": ["p", "q"], "categories": [["x", "y"], None], "price": [1.5, None]})
    pq.write_table(table, tmp_path / "items.parquet")
    catalog = Catalog.read(tmp_path / "items.parquet", mapping={"item_id": "id"})
    assert catalog.categories == [("x", "y"), ()] and catalog.attributes == [{"price": 1.5}, {}]


def test_bad_rows_are_named_with_their_line(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,available\na,true\n,true\nb,perhaps\nc,false,extra\nd,no\n")
    with pytest.raises(RecforgeError, match=r"3 bad items \(first at line 3: missing item_id\)"):
        Catalog.read(path)
    catalog = Catalog.read(path, strict=False)
    assert catalog.item_ids.tolist() == ["a", "d"]
    assert [(r.location["line"], r.reason) for r in catalog.rejections] == [
        (3, "missing item_id"),
        (4, "available must be true or false, got 'perhaps'"),
        (5, "3 columns, expected 2"),
    ]


def test_unreadable_sources(tmp_path):
    with pytest.raises(UnreadableSourceError, match="no such file"):
        ItemSource(tmp_path / "nope.csv")
    (tmp_path / "x.csv").write_text("sku,title\n1,a\n")
    with pytest.raises(UnreadableSourceError, match="no item_id column"):
        Catalog.read(tmp_path / "x.csv")
    with pytest.raises(RecforgeError, match="unknown field"):
        Catalog.read(tmp_path / "x.csv", mapping={"id": "sku"})


def test_movielens_100k_u_item():
    path = dataset_path("ml-100k", "u.item.gz")
    assert detect_item_format(path) == "ml-item"
    catalog = Catalog.read(path)
    assert len(catalog) == 1682
    first = catalog.item_ids.tolist().index("1")
    assert catalog.categories[first] == ("Animation", "Children's", "Comedy")
    assert (
        catalog.attributes[first]["title"] == "Toy Story (1995)" and catalog.attributes[first]["year"] == 1995
    )
    assert catalog.created_at_us[first] == int(datetime(1995, 1, 1, tzinfo=UTC).timestamp() * 1e6)


def test_movielens_1m_movies_dat():
    path = dataset_path("ml-1m-pairs", "movies.dat.gz")
    catalog = Catalog.read(path)
    assert len(catalog) == 3883
    row = catalog.item_ids.tolist().index("2")
    assert catalog.categories[row] == ("Adventure", "Children's", "Fantasy")
    assert catalog.attributes[row] == {"title": "Jumanji (1995)", "year": 1995}
    assert catalog.category_counts()["Drama"] == 1603
