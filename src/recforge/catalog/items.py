"""``Catalog``: a set of items in memory, from a file, a DataFrame, records or the store.

``Catalog.read("items.csv")`` validates as ``recforge items ingest`` does (bad rows raise,
naming the first, unless ``strict=False``, which keeps the good ones and lists the bad in
``rejections``); a later record of the same item patches the earlier one, as upserts do.
Columns, in item order:

* ``item_ids`` (``str`` object array), ``categories`` (tuples of names), ``available`` (bool),
  ``created_at_us`` (int64 microseconds since the epoch; :data:`NO_TIME` where not given),
  ``attributes`` (dicts of strings and numbers).

``model.fit(interactions, catalog=catalog)`` gives every item of a catalog a factor vector
(:mod:`recforge.models.cold_start`); :meth:`Catalog.eligibility` says which items of a model's
vocabulary are available and in which categories (:mod:`recforge.catalog.eligibility`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from recforge.catalog.readers import ItemSource
from recforge.catalog.record import ItemPatch, validate_record
from recforge.catalog.store import CatalogStore, ItemRow
from recforge.data.validation import Rejection
from recforge.errors import RecforgeError

if TYPE_CHECKING:
    from recforge.catalog.eligibility import Eligibility
    from recforge.data.vocabulary import Vocabulary

__all__ = ["NO_TIME", "Catalog"]

#: ``created_at_us`` of an item whose record gave no time.
NO_TIME = np.iinfo(np.int64).min


@dataclass(frozen=True, eq=False)
class Catalog:
    """Items and their records, in a fixed order (see the module doc)."""

    item_ids: np.ndarray
    categories: list[tuple[str, ...]]
    available: np.ndarray
    created_at_us: np.ndarray
    attributes: list[dict[str, Any]]
    rejections: list[Rejection] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        sizes = {len(self.categories), len(self.available), len(self.created_at_us), len(self.attributes)}
        if sizes != {n}:
            raise ValueError("catalog columns differ in length")
        if len(set(self.item_ids.tolist())) != n:
            raise ValueError("catalog item ids must be distinct")

    def __len__(self) -> int:
        return len(self.item_ids)

    def __repr__(self) -> str:
        return f"Catalog({len(self)} items, {int(self.available.sum())} available)"

    # construction ---------------------------------------------------------------------------
    @classmethod
    def from_patches(cls, patches: Iterable[ItemPatch], rejections: list[Rejection] | None = None) -> Catalog:
        """Items from patches applied in order (a later patch of an item changes only its fields)."""
        merged: dict[str, dict[str, Any]] = {}
        for patch in patches:
            record = merged.setdefault(
                patch.item_id, {"categories": (), "available": True, "created": NO_TIME, "attributes": {}}
            )
            if patch.categories is not None:
                record["categories"] = patch.categories
            if patch.available is not None:
                record["available"] = patch.available
            if patch.created_at_us is not None:
                record["created"] = patch.created_at_us
            if patch.attributes is not None:
                attributes = record["attributes"]
                for key, value in patch.attributes.items():
                    if value is None:
                        attributes.pop(key, None)
                    else:
                        attributes[key] = value
        ids = np.empty(len(merged), dtype=object)
        ids[:] = list(merged)
        values = list(merged.values())
        return cls(
            ids,
            [r["categories"] for r in values],
            np.fromiter((r["available"] for r in values), dtype=bool, count=len(values)),
            np.fromiter((r["created"] for r in values), dtype=np.int64, count=len(values)),
            [r["attributes"] for r in values],
            list(rejections or []),
        )

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], *, strict: bool = True) -> Catalog:
        """Items from dicts (keys other than the fields are attributes, as in files)."""
        patches: list[ItemPatch] = []
        rejections: list[Rejection] = []
        for index, record in enumerate(records):
            result = validate_record(record, extra="attributes")
            if isinstance(result, ItemPatch):
                patches.append(result)
            else:
                rejections.append(Rejection("records", {"index": index}, "; ".join(result), record))
        _raise_if(strict, rejections)
        return cls.from_patches(patches, rejections)

    @classmethod
    def from_pandas(
        cls, frame: Any, *, mapping: Mapping[str, str] | None = None, strict: bool = True
    ) -> Catalog:
        """Items from a pandas DataFrame (columns as in a CSV file; ``mapping`` names the
        column of a field, e.g. ``{"item_id": "sku"}``); missing values are "not given"."""
        rename = {column: name for name, column in (mapping or {}).items()}
        records = []
        for row in frame.to_dict(orient="records"):
            records.append({rename.get(k, k): _plain(v) for k, v in row.items() if not _missing(v)})
        return cls.from_records(records, strict=strict)

    @classmethod
    def read(
        cls,
        path: str | Path,
        *,
        format: str | None = None,
        mapping: Mapping[str, str] | None = None,
        strict: bool = True,
        max_id_length: int | None = None,
    ) -> Catalog:
        """Items from a file (formats of :mod:`recforge.catalog.readers`)."""
        source = ItemSource(path, format, mapping)
        patches: list[ItemPatch] = []
        rejections: list[Rejection] = []
        for chunk in source.chunks():
            good, bad = validate_chunk(chunk, str(source.path), max_id_length)
            patches += good
            rejections += bad
        _raise_if(strict, rejections)
        return cls.from_patches(patches, rejections)

    @classmethod
    def load(cls, home: str | Path) -> Catalog:
        """The catalog stored under ``home`` (empty when there is none)."""
        return cls.from_rows(CatalogStore(home).iter_rows())

    @classmethod
    def from_rows(cls, rows: Iterable[ItemRow]) -> Catalog:
        rows = list(rows)
        ids = np.empty(len(rows), dtype=object)
        ids[:] = [r.item_id for r in rows]
        return cls(
            ids,
            [tuple(orjson.loads(r.categories)) for r in rows],
            np.fromiter((r.available for r in rows), dtype=bool, count=len(rows)),
            np.fromiter((r.created_at_us for r in rows), dtype=np.int64, count=len(rows)),
            [orjson.loads(r.attributes) for r in rows],
        )

    # views ----------------------------------------------------------------------------------
    def patches(self) -> list[ItemPatch]:
        """The items as whole-record patches (what ``store.upsert(..., replace=True)`` takes)."""
        return [
            ItemPatch(
                str(item),
                cats,
                bool(ok),
                None if created == NO_TIME else int(created),
                dict(attributes),
            )
            for item, cats, ok, created, attributes in zip(
                self.item_ids,
                self.categories,
                self.available,
                self.created_at_us,
                self.attributes,
                strict=True,
            )
        ]

    def take(self, rows: np.ndarray | list[int]) -> Catalog:
        """The items at ``rows``, in that order."""
        picked = np.asarray(rows, dtype=np.int64)
        return Catalog(
            self.item_ids[picked],
            [self.categories[r] for r in picked.tolist()],
            self.available[picked],
            self.created_at_us[picked],
            [self.attributes[r] for r in picked.tolist()],
        )

    def category_counts(self) -> dict[str, int]:
        """Items per category, largest first (ties by name)."""
        counts: dict[str, int] = {}
        for names in self.categories:
            for name in names:
                counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def eligibility(self, vocabulary: Vocabulary) -> Eligibility:
        """Availability and category members over ``vocabulary``'s indices."""
        from recforge.catalog.eligibility import Eligibility

        return Eligibility.of(self, vocabulary)

    def fingerprint(self) -> str:
        """A hash of what a model learns from the catalog (ids, categories, created_at and
        attributes; not availability, which is applied when answering)."""
        digest = hashlib.sha256()
        for item, cats, created, attributes in zip(
            self.item_ids, self.categories, self.created_at_us, self.attributes, strict=True
        ):
            digest.update(orjson.dumps([item, cats, int(created), attributes], option=orjson.OPT_SORT_KEYS))
        return digest.hexdigest()[:16]


def validate_chunk(
    chunk: Any, source: str, max_id_length: int | None = None
) -> tuple[list[ItemPatch], list[Rejection]]:
    """The patches of a reader's chunk, and its rejections (location, reason, raw text)."""
    from recforge.data.schema import MAX_ID_LENGTH

    limit = max_id_length or MAX_ID_LENGTH
    good: list[ItemPatch] = []
    bad: list[Rejection] = []
    for j, record in enumerate(chunk.records):
        reason = chunk.malformed.get(j)
        if reason is None:
            result = validate_record(record, max_id_length=limit, extra="attributes")
            if isinstance(result, ItemPatch):
                good.append(result)
                continue
            reason = "; ".join(result)
        bad.append(Rejection(source, chunk.locations[j], reason, chunk.raw[j]))
    return good, bad


def _raise_if(strict: bool, rejections: Sequence[Rejection]) -> None:
    if strict and rejections:
        first = rejections[0]
        where = ", ".join(f"{k} {v}" for k, v in first.location.items())
        raise RecforgeError(
            f"{first.source}: {len(rejections)} bad items (first at {where}: {first.reason}); "
            "pass strict=False to keep the good ones"
        )


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays (from pandas) as Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    return value
