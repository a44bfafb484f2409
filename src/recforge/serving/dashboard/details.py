"""How the dashboard names an item: the one place catalog details plug in.

Until the catalog (``recforge.catalog``) is there, an item is shown by its id alone: the
function answers ``None``. Once it is, it returns the item's title, image and categories, and
every page that lists items shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ItemDetails", "item_details"]


@dataclass(frozen=True)
class ItemDetails:
    """What a page shows of an item besides its id."""

    title: str | None = None
    image_url: str | None = None
    categories: list[str] = field(default_factory=list)


def item_details(home: str | Path, item_id: str) -> ItemDetails | None:
    """The display details of ``item_id`` under ``home``, or ``None`` when there are none."""
    return None
