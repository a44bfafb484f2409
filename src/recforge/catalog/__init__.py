"""The catalog: items (categories, availability, created_at, attributes), their store, and the
eligibility masks that filters apply over a model's item vocabulary."""

from recforge.catalog.eligibility import Eligibility
from recforge.catalog.items import Catalog
from recforge.catalog.record import ItemPatch
from recforge.catalog.store import CatalogStore

__all__ = ["Catalog", "CatalogStore", "Eligibility", "ItemPatch"]
