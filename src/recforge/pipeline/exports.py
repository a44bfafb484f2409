"""``recforge export``: a version's lists as Parquet files, filtered by the catalog.

Every user's top ``k`` (``user_id, rank, item_id, score``; rank from 1) among the version's
items that are available now (and in any of ``categories``), seen items left out: computed
exactly with the model's own ``recommend(..., items=)``, so a category far smaller than the
precomputed lists still gets ``k`` items. ``similar`` adds every item's ``k`` most similar
eligible items (``item_id, rank, similar_item_id, score``). Files are written under a temporary
name and renamed: a reader sees the old file or the new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recforge._files import replace_atomic, temporary_name
from recforge.artifacts import ModelRegistry
from recforge.catalog import Catalog, CatalogStore
from recforge.data.vocabulary import Vocabulary

__all__ = ["export_lists"]


def export_lists(
    home: str | Path,
    out: str | Path,
    *,
    k: int = 10,
    categories: Sequence[str] | None = None,
    similar: str | Path | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """Write the lists (see the module doc); returns what was written."""
    artifact = ModelRegistry(home).open(version)
    model = artifact.model
    eligible = None
    if CatalogStore(home).exists or categories is not None:
        eligible = Catalog.load(home).eligibility(model.items_).items(categories)
    users = np.arange(len(model.users_), dtype=np.int32)
    ids, scores = model.recommend(users, k, items=eligible)
    rows = _write(out, "user_id", model.users_, users, "item_id", model.items_, ids, scores)
    report: dict[str, Any] = {"version": artifact.version, "users": len(users), "rows": rows}
    if similar is not None:
        queries = np.arange(len(model.items_), dtype=np.int32)
        ids, scores = model.similar_items(queries, k, items=eligible)
        report["similar_rows"] = _write(
            similar, "item_id", model.items_, queries, "similar_item_id", model.items_, ids, scores
        )
    return report


def _write(
    path: str | Path,
    key: str,
    keys: Vocabulary,
    rows: np.ndarray,
    value: str,
    values: Vocabulary,
    ids: np.ndarray,
    scores: np.ndarray,
) -> int:
    valid = ids >= 0
    row_of = np.repeat(rows, valid.sum(axis=1))
    rank = (np.cumsum(valid, axis=1))[valid]
    table = pa.table(
        {
            key: pa.array(keys.ids(row_of), pa.string()),
            "rank": pa.array(rank, pa.int32()),
            value: pa.array(values.ids(ids[valid]), pa.string()),
            "score": pa.array(scores[valid], pa.float32()),
        }
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(target)
    try:
        pq.write_table(table, tmp, compression="zstd")
        replace_atomic(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return table.num_rows
