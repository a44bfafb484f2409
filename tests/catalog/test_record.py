"""Validation of one item record (issue 15): every field's rule, with the reason named."""

from datetime import UTC, datetime

import pytest

from recforge.catalog.record import ItemPatch, validate_record


def test_a_whole_record():
    patch = validate_record(
        {
            "item_id": "sku-1",
            "categories": ["sneakers", "running", "sneakers"],
            "available": False,
            "created_at": "2024-05-01T12:00:00Z",
            "attributes": {"title": "Air 1", "price": 129.5, "stock": 3},
        }
    )
    assert patch == ItemPatch(
        "sku-1",
        ("sneakers", "running"),
        False,
        int(datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp() * 1e6),
        {"title": "Air 1", "price": 129.5, "stock": 3},
    )


def test_a_partial_record_gives_only_its_fields():
    assert validate_record({"item_id": 7, "available": "no"}) == ItemPatch("7", available=False)
    assert validate_record({"item_id": "a", "categories": "x | y"}) == ItemPatch("a", categories=("x", "y"))
    assert validate_record({"item_id": "a", "created_at": 1714564800}).created_at_us == 1714564800_000_000
    assert validate_record({"item_id": "a", "attributes": {"price": None}}).attributes == {"price": None}


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"categories": ["a"]}, "missing item_id"),
        ({"item_id": ""}, "missing item_id"),
        ({"item_id": True}, "item_id must be a string or an integer"),
        ({"item_id": "x" * 300}, "item_id longer than 256 characters"),
        ({"item_id": "a", "categories": ["a,b"]}, "contains ',' or '|'"),
        ({"item_id": "a", "categories": [""]}, "an empty category name"),
        ({"item_id": "a", "categories": [1]}, "categories must be a list of strings"),
        ({"item_id": "a", "categories": [f"c{j}" for j in range(65)]}, "more than 64 categories"),
        ({"item_id": "a", "available": "maybe"}, "available must be true or false"),
        ({"item_id": "a", "created_at": "yesterday"}, "unparsable created_at"),
        ({"item_id": "a", "created_at": "0999-01-01"}, "outside years 1000..9999"),
        ({"item_id": "a", "created_at": 1e300}, "outside years 1000..9999"),
        ({"item_id": "a", "created_at": "-1e308"}, "outside years 1000..9999"),
        ({"item_id": "a", "created_at": float("inf")}, "unparsable created_at"),
        ({"item_id": "a", "attributes": ["x"]}, "attributes must be a JSON object"),
        (
            {"item_id": "a", "attributes": {"tags": ["x"]}},
            "attribute 'tags' must be a string or a finite number",
        ),
        (
            {"item_id": "a", "attributes": {"new": True}},
            "attribute 'new' must be a string or a finite number",
        ),
        ({"item_id": "a", "attributes": {"price": float("nan")}}, "must be a string or a finite number"),
        ({"item_id": "a", "attributes": {"n": 10**30}}, "must be a string or a finite number (64-bit)"),
        ({"item_id": "a", "attributes": {"t": "x" * 5000}}, "longer than 4096 characters"),
        ({"item_id": "a", "availabel": False}, "unknown field 'availabel'"),
        ("not an object", "not a JSON object"),
    ],
)
def test_bad_records_name_the_reason(record, reason):
    result = validate_record(record)
    assert isinstance(result, list)
    assert any(reason in r for r in result), result


def test_in_files_other_columns_are_attributes():
    patch = validate_record({"item_id": "a", "title": "T", "price": 3}, extra="attributes")
    assert patch.attributes == {"title": "T", "price": 3}
    both = validate_record({"item_id": "a", "title": "T", "attributes": {"title": "U"}}, extra="attributes")
    assert both.attributes == {"title": "U"}  # the attributes object wins
