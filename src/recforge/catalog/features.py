"""Attribute features: an item's catalog record as a fixed-length numeric vector.

What the cold-start map (:mod:`recforge.models.cold_start`) regresses item factors on. Learned
from the records of a set of items (:meth:`AttributeFeatures.fit`), then applied to any record
(:meth:`AttributeFeatures.transform`), column by column:

* one indicator per category;
* one indicator per frequent value of a low-cardinality string attribute (``brand``: an
  attribute is used when at most ``MAX_VALUES`` of its values occur on two items or more and
  those cover at least half of the items that have it; ``title`` and ``image_url`` are not);
* for each attribute that is a number on at least half of the items (``price``, ``year``) and
  for ``created_at`` (in years): the standardised value ``z = (x - mean) / std`` and ``z**2``
  (clipped to ``|z| <= 5``), and an indicator of the value being absent when it sometimes is
  (an absent value has ``z = 0``).

A value never seen when fitting (a new category, a new brand) contributes nothing. The learned
vocabulary is plain JSON (:meth:`to_dict`), saved with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recforge.catalog.items import NO_TIME, Catalog

__all__ = ["MAX_VALUES", "AttributeFeatures"]

MAX_VALUES = 256
_US_PER_YEAR = 365.2425 * 86_400e6
_CLIP = 5.0


@dataclass(frozen=True)
class _Number:
    name: str
    mean: float
    std: float
    sometimes_missing: bool


@dataclass(frozen=True)
class AttributeFeatures:
    """The feature layout learned from a catalog (see the module doc)."""

    categories: tuple[str, ...]
    strings: dict[str, tuple[str, ...]]
    numbers: tuple[_Number, ...]

    @property
    def width(self) -> int:
        """Number of feature columns."""
        numeric = sum(3 if n.sometimes_missing else 2 for n in self.numbers)
        return len(self.categories) + sum(len(v) for v in self.strings.values()) + numeric

    @classmethod
    def fit(cls, catalog: Catalog) -> AttributeFeatures:
        categories = tuple(sorted({name for names in catalog.categories for name in names}))
        strings: dict[str, tuple[str, ...]] = {}
        numbers: list[_Number] = []
        n = len(catalog)
        keys = sorted({key for attributes in catalog.attributes for key in attributes})
        for key in keys:
            values = [a[key] for a in catalog.attributes if key in a]
            numeric = [float(v) for v in values if isinstance(v, int | float)]
            if len(numeric) * 2 >= n and len(numeric) > 1:
                numbers.append(_number(key, np.asarray(numeric), len(numeric) < n))
                continue
            texts = [v for v in values if isinstance(v, str)]
            counts: dict[str, int] = {}
            for text in texts:
                counts[text] = counts.get(text, 0) + 1
            frequent = sorted(v for v, c in counts.items() if c >= 2)
            covered = sum(counts[v] for v in frequent)
            if frequent and len(frequent) <= MAX_VALUES and covered * 2 >= len(texts):
                strings[key] = tuple(frequent)
        created = catalog.created_at_us[catalog.created_at_us != NO_TIME] / _US_PER_YEAR
        if len(created) * 2 >= n and len(created) > 1:
            numbers.append(_number("created_at", created, len(created) < n))
        return cls(categories, strings, tuple(numbers))

    def transform(self, catalog: Catalog) -> np.ndarray:
        """Features of every item of ``catalog``: float32 ``[len(catalog), width]``."""
        n = len(catalog)
        out = np.zeros((n, self.width), dtype=np.float32)
        column = {name: j for j, name in enumerate(self.categories)}
        for row, names in enumerate(catalog.categories):
            for name in names:
                j = column.get(name)
                if j is not None:
                    out[row, j] = 1.0
        start = len(self.categories)
        for key, values in self.strings.items():
            position = {value: start + j for j, value in enumerate(values)}
            for row, attributes in enumerate(catalog.attributes):
                j = position.get(attributes.get(key))  # type: ignore[arg-type]
                if j is not None:
                    out[row, j] = 1.0
            start += len(values)
        for number in self.numbers:
            if number.name == "created_at":
                present = catalog.created_at_us != NO_TIME
                raw = np.where(present, catalog.created_at_us / _US_PER_YEAR, 0.0)
            else:
                raw, present = _column(catalog.attributes, number.name)
            z = np.clip((raw - number.mean) / number.std, -_CLIP, _CLIP)
            z = np.where(present, z, 0.0)
            out[:, start] = z
            out[:, start + 1] = np.where(present, z * z, 0.0)
            start += 2
            if number.sometimes_missing:
                out[:, start] = ~present
                start += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "categories": list(self.categories),
            "strings": {k: list(v) for k, v in self.strings.items()},
            "numbers": [
                {"name": n.name, "mean": n.mean, "std": n.std, "sometimes_missing": n.sometimes_missing}
                for n in self.numbers
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttributeFeatures:
        return cls(
            tuple(data["categories"]),
            {k: tuple(v) for k, v in data["strings"].items()},
            tuple(_Number(**n) for n in data["numbers"]),
        )


def _number(name: str, values: np.ndarray, sometimes_missing: bool) -> _Number:
    std = float(values.std())
    return _Number(name, float(values.mean()), std if std > 0 else 1.0, sometimes_missing)


def _column(attributes: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    raw = np.zeros(len(attributes))
    present = np.zeros(len(attributes), dtype=bool)
    for row, record in enumerate(attributes):
        value = record.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            raw[row] = value
            present[row] = True
    return raw, present
