"""A synthetic catalog for the synthetic events of :mod:`recforge.data.generate`.

The items ``i0 .. i<items-1>`` of ``generate_events(items=..., seed=..., categories=...)`` get
the category the events were drawn from (named: ``sneakers``, ``tech``, ``life``, ... then
``cat13`` ...), a brand (each category has its own few brands), a price (lognormal around a
median of the category), a title, an image URL and a ``created_at`` in the two years before the
events start. ``new_items`` more items (``i<items>`` ...) have no events: new arrivals, created
in the last week of the events' span. A share ``sold_out`` of all items is unavailable. Seeded:
the same arguments give the same catalog.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa

from recforge.data.generate import START, default_categories, item_layout
from recforge.errors import RecforgeError

__all__ = ["CATEGORY_NAMES", "category_name", "generate_catalog"]

CATEGORY_NAMES = (
    "sneakers", "tech", "life", "running", "audio", "home", "outdoor", "kitchen", "books", "toys",
    "beauty", "garden",
)  # fmt: skip
_BRANDS = (
    "Acme", "Nimbus", "Vertex", "Orbit", "Kestrel", "Lumen", "Pioneer", "Quarry", "Summit", "Tandem",
    "Umbra", "Vista", "Willow", "Zephyr", "Atlas", "Beacon", "Cobalt", "Dune",
)  # fmt: skip


def category_name(index: int) -> str:
    return CATEGORY_NAMES[index] if index < len(CATEGORY_NAMES) else f"cat{index + 1}"


def generate_catalog(
    items: int = 2_000,
    seed: int = 0,
    categories: int | None = None,
    *,
    new_items: int = 0,
    sold_out: float = 0.1,
    days: float = 90.0,
) -> pa.Table:
    """The catalog (see the module doc) as a table with the columns of an item CSV file:
    ``item_id``, ``categories``, ``available``, ``created_at`` (ISO 8601), ``title``, ``brand``,
    ``price``, ``image_url``."""
    categories = default_categories(items) if categories is None else categories
    if not 0.0 <= sold_out <= 1.0:
        raise RecforgeError(f"sold_out must be a share between 0 and 1, got {sold_out}")
    if new_items < 0:
        raise RecforgeError(f"new_items must be >= 0, got {new_items}")
    item_category, _ = item_layout(items, seed, categories)
    rng = np.random.default_rng([seed, 1])
    total = items + new_items
    category = np.concatenate([item_category, rng.integers(0, categories, new_items)])
    brand = (category * 5 + rng.integers(0, 5, total)) % len(_BRANDS)
    median = np.exp(rng.uniform(np.log(15), np.log(400), categories))
    price = np.round(median[category] * rng.lognormal(0.0, 0.4, total), 2)
    start_us = int(START.timestamp() * 1e6)
    before = rng.uniform(0, 2 * 365 * 86_400, items)
    recent = rng.uniform(max(days - 7, 0), days, new_items) * 86_400
    created_us = start_us + (np.concatenate([-before, recent]) * 1e6).astype(np.int64)
    available = rng.random(total) >= sold_out
    names = [category_name(int(c)) for c in category]
    brands = [_BRANDS[int(b)] for b in brand]
    ids = [f"i{j}" for j in range(total)]
    return pa.table(
        {
            "item_id": ids,
            "categories": names,
            "available": available,
            "created_at": [
                (START + timedelta(microseconds=int(t - start_us))).isoformat().replace("+00:00", "Z")
                for t in created_us
            ],
            "title": [f"{b} {n} {j}" for j, (b, n) in enumerate(zip(brands, names, strict=True))],
            "brand": brands,
            "price": price,
            "image_url": [f"https://img.example.com/{i}.jpg" for i in ids],
        }
    )
