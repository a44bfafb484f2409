"""How the dashboard names an item: its catalog details (:mod:`recforge.catalog`).

An item the catalog holds is shown with its title, image, categories and whether it is sold
out; an item it does not hold (or a home without a catalog) by its id alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from recforge.catalog import CatalogStore

__all__ = ["ItemDetails", "item_details"]


@dataclass(frozen=True)
class ItemDetails:
    """What a page shows of an item besides its id."""

    title: str | None = None
    image_url: str | None = None
    categories: list[str] = field(default_factory=list)
    available: bool = True


def item_details(catalog: CatalogStore, item_id: str) -> ItemDetails | None:
    """The display details of ``item_id`` (one primary-key lookup), or ``None`` when the
    catalog does not hold it."""
    if not catalog.exists:
        return None
    row = catalog.get(item_id)
    if row is None:
        return None
    attributes = orjson.loads(row.attributes)
    title, image = attributes.get("title"), attributes.get("image_url")
    return ItemDetails(
        title=None if title is None else str(title),
        image_url=None if image is None else str(image),
        categories=[str(c) for c in orjson.loads(row.categories)],
        available=row.available,
    )
