"""Batch top-K on Spark: the model's item factors broadcast, the bounded top-K kernel per partition.

The driver cuts the rows to score (users, or items for similar items) into chunks of
``chunk_rows``: each chunk carries its rows' factors and, for users, their seen items (CSR),
as one Arrow row. Spark spreads the chunks over its tasks; each task runs the same kernel as
local precomputation (:func:`recforge.topk.recommend_all`, or
:func:`~recforge.topk.similar_items_all` for cosine neighbours) against the broadcast item
factors, pinned to the task's cores, and emits one output row per user (or item)::

    user (or item) string    the external id
    index int                its dense index in the model's vocabulary
    items list<int>          the recommended items' dense indices, best first (no padding)
    scores list<float>       their scores

Item indices, not ids, because that is what the model artifact and the Redis list store hold
(``model.items_`` names them). Memory per task is one chunk plus the kernel's tiles, never a
users x items matrix. :func:`write_redis` copies such lists straight from the executors into the
Redis list store serving reads (:mod:`recforge.lists`); :func:`lists_array` reads them
back as the artifact's padded ``[n, k]`` arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recforge.lists import encode_rows, redis_client, redis_key, translate_errors
from recforge.models.base import FactorRecommender
from recforge.spark.session import check_executors, inject_failure, require_pyspark, task_threads

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "RedisTarget",
    "lists_array",
    "recommend_all_users",
    "similar_items_all_items",
    "write_redis",
]

#: rows per chunk (one Arrow row, one unit of work for a task)
CHUNK_ROWS = 8192
_CHUNK_SCHEMA = pa.schema(
    [
        ("start", pa.int64()),
        ("rows", pa.int64()),
        ("factors", pa.large_binary()),
        ("seen_indptr", pa.large_binary()),
        ("seen_indices", pa.large_binary()),
    ]
)


def _lists_schema(key: str) -> str:
    return f"{key} string, index int, items array<int>, scores array<float>"


@dataclass(frozen=True)
class RedisTarget:
    """Where :func:`write_redis` puts lists: model version ``version`` of the list store at
    ``url`` under key prefix ``prefix`` (``serving.redis_prefix``), in the layout of
    :mod:`recforge.lists`. Register the version first (:meth:`RedisLists.begin`) and mark it
    ready when both parts are in (:meth:`RedisLists.finish`)."""

    url: str
    version: str
    prefix: str
    #: list rows per ``HSET`` round trip
    batch: int = 2000

    def key(self, part: str) -> str:
        return redis_key(self.prefix, self.version, part)


# driver -------------------------------------------------------------------------------------
def recommend_all_users(
    spark: SparkSession,
    model: FactorRecommender,
    k: int = 10,
    *,
    filter_seen: bool = True,
    path: str | Path | None = None,
    chunk_rows: int = CHUNK_ROWS,
    num_threads: int = 0,
) -> DataFrame:
    """Top-``k`` items for every user of a fitted factor model (``ALS``, ``BPR``), as
    ``recommend(filter_seen=...)`` computes them, one output row per user (module doc).

    With ``path`` the lists are written there as Parquet (overwriting) and the returned frame
    reads them; without, the frame is computed when used. ``num_threads`` numba threads per task
    (``0``: ``spark.task.cpus``).
    """
    model._check_fitted()
    seen = model.seen_ if filter_seen else None
    chunks = _chunks(spark, np.asarray(model.user_factors_), seen, chunk_rows)
    task = functools.partial(
        _recommend_task,
        spark.sparkContext.broadcast(np.ascontiguousarray(model.item_factors_, dtype=np.float32)),
        spark.sparkContext.broadcast(model.users_.array),
        int(k),
        int(num_threads),
    )
    return _finish(spark, chunks.mapInArrow(task, _lists_schema("user")), path)


def similar_items_all_items(
    spark: SparkSession,
    model: FactorRecommender,
    k: int = 10,
    *,
    path: str | Path | None = None,
    chunk_rows: int = CHUNK_ROWS,
    num_threads: int = 0,
) -> DataFrame:
    """The ``k`` cosine neighbours of every item (never the item itself), as
    ``similar_items`` computes them, one output row per item (module doc)."""
    model._check_fitted()
    items = np.ascontiguousarray(model.item_factors_, dtype=np.float32)
    chunks = _chunks(spark, items, None, chunk_rows)
    task = functools.partial(
        _similar_task,
        spark.sparkContext.broadcast(items),
        spark.sparkContext.broadcast(model.items_.array),
        int(k),
        int(num_threads),
    )
    return _finish(spark, chunks.mapInArrow(task, _lists_schema("item")), path)


def write_redis(lists: DataFrame, target: RedisTarget, part: str) -> int:
    """Copy lists (as :func:`recommend_all_users` or :func:`similar_items_all_items` make them,
    e.g. read back from Parquet) into the Redis list store, straight from the executors: hash
    ``<prefix>:lists:<version>:<part>`` (``part``: ``users`` or ``items``), id -> the encoded
    ``[k]`` list, padded with ``-1`` as :func:`recforge.lists.encode_list` stores it.
    Returns the rows written."""
    if part not in ("users", "items"):
        raise ValueError(f"part must be 'users' or 'items', got {part!r}")
    key_column = lists.columns[0]
    with translate_errors(target.url):
        redis_client(target.url).delete(target.key(part))
    width = _width(lists)
    written = lists.select(key_column, "items", "scores").mapInArrow(
        functools.partial(_redis_task, target, part, width), "rows long"
    )
    return int(sum(row[0] for row in written.collect()))


def lists_array(lists: DataFrame, n_rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The lists as padded ``(ids int32 [n_rows, k], scores float32 [n_rows, k])`` arrays on the
    driver, row ``index`` for each output row (padding ``-1`` / ``-inf``), as the model
    artifact stores them."""
    ids = np.full((n_rows, k), -1, dtype=np.int32)
    scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
    table = lists.select("index", "items", "scores").toArrow()
    if table.num_rows:
        index = table.column("index").to_numpy()
        ids[index], scores[index] = _padded(table.column("items"), table.column("scores"), k)
    return ids, scores


def _padded(items: Any, scores: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Ragged Arrow lists as ``[n, k]`` arrays padded with ``-1`` / ``-inf``."""
    items = items.combine_chunks() if isinstance(items, pa.ChunkedArray) else items
    scores = scores.combine_chunks() if isinstance(scores, pa.ChunkedArray) else scores
    lengths = items.value_lengths().to_numpy(zero_copy_only=False)
    n = len(lengths)
    if n and lengths.max() > k:
        raise ValueError(f"the lists hold up to {lengths.max()} items, more than k={k}")
    out_ids = np.full((n, k), -1, dtype=np.int32)
    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    rows = np.repeat(np.arange(n), lengths)
    columns = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out_ids[rows, columns] = items.flatten().to_numpy()
    out_scores[rows, columns] = scores.flatten().to_numpy()
    return out_ids, out_scores


def _chunks(
    spark: SparkSession, factors: np.ndarray, seen: sp.csr_matrix | None, chunk_rows: int
) -> DataFrame:
    """One Arrow row per chunk of ``chunk_rows`` rows: their factors and seen items (CSR)."""
    require_pyspark()
    check_executors(spark.sparkContext)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    factors = np.ascontiguousarray(factors, dtype=np.float32)
    n = len(factors)
    starts = list(range(0, n, chunk_rows))
    columns: dict[str, list[Any]] = {name: [] for name in _CHUNK_SCHEMA.names}
    for start in starts:
        stop = min(start + chunk_rows, n)
        columns["start"].append(start)
        columns["rows"].append(stop - start)
        columns["factors"].append(factors[start:stop].tobytes())
        if seen is None:
            indptr, indices = np.zeros(stop - start + 1, np.int64), np.zeros(0, np.int32)
        else:
            part = seen[start:stop]
            if not part.has_sorted_indices:
                part = part.sorted_indices()
            indptr, indices = part.indptr.astype(np.int64), part.indices.astype(np.int32)
        columns["seen_indptr"].append(indptr.tobytes())
        columns["seen_indices"].append(indices.tobytes())
    table = pa.table(columns, schema=_CHUNK_SCHEMA)
    frame = spark.createDataFrame(table)
    return frame.repartition(max(1, len(starts)))


def _finish(spark: SparkSession, lists: DataFrame, path: str | Path | None) -> DataFrame:
    if path is None:
        return lists
    lists.write.mode("overwrite").parquet(str(path))
    return spark.read.parquet(str(path))


def _width(lists: DataFrame) -> int:
    from pyspark.sql import functions as F

    row = lists.agg(F.max(F.size("items"))).first()
    return int(row[0] or 0) if row is not None else 0


# executors ----------------------------------------------------------------------------------
def _chunk_arrays(row: dict[str, Any], n_items: int, f: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """A chunk's factors ``[rows, f]`` and seen items (CSR ``[rows, n_items]``)."""
    n = int(row["rows"])
    factors = np.frombuffer(row["factors"], dtype=np.float32).reshape(n, f)
    indptr = np.frombuffer(row["seen_indptr"], dtype=np.int64)
    indices = np.frombuffer(row["seen_indices"], dtype=np.int32)
    seen = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(n, n_items))
    return factors, seen


def _lists_batch(key: str, ids: pa.Array, start: int, top: np.ndarray, values: np.ndarray) -> pa.RecordBatch:
    """Output rows for a chunk: padding (``-1``) dropped, lists ragged."""
    valid = top >= 0
    offsets = np.zeros(len(top) + 1, dtype=np.int32)
    np.cumsum(valid.sum(axis=1), out=offsets[1:])
    return pa.RecordBatch.from_arrays(
        [
            ids.slice(start, len(top)).cast(pa.string()),
            pa.array(np.arange(start, start + len(top), dtype=np.int32)),
            pa.ListArray.from_arrays(pa.array(offsets), pa.array(top[valid].astype(np.int32))),
            pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[valid].astype(np.float32))),
        ],
        names=[key, "index", "items", "scores"],
    )


def _recommend_task(
    items: Any, users: Any, k: int, threads: int, batches: Iterable[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    from recforge.topk import recommend_all

    inject_failure("topk")
    item_factors: np.ndarray = items.value
    for batch in batches:
        for row in batch.to_pylist():
            factors, exclude = _chunk_arrays(row, *item_factors.shape)
            top, values = recommend_all(
                factors, item_factors, k, exclude, num_threads=task_threads(threads), progress=False
            )
            yield _lists_batch("user", users.value, int(row["start"]), top, values)


def _similar_task(
    items: Any, names: Any, k: int, threads: int, batches: Iterable[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    from recforge.topk import similar_items_all

    inject_failure("topk")
    item_factors: np.ndarray = items.value
    for batch in batches:
        for row in batch.to_pylist():
            start, n = int(row["start"]), int(row["rows"])
            top, values = similar_items_all(
                item_factors,
                k,
                items=np.arange(start, start + n, dtype=np.int64),
                symmetric=False,
                num_threads=task_threads(threads),
                progress=False,
            )
            yield _lists_batch("item", names.value, start, top, values)


def _redis_task(
    target: RedisTarget, part: str, width: int, batches: Iterable[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    client = redis_client(target.url)
    key = target.key(part)
    written = 0
    with translate_errors(target.url):
        for batch in batches:
            for start in range(0, batch.num_rows, target.batch):
                chunk = batch.slice(start, target.batch)
                names = chunk.column(0).to_pylist()
                rows = encode_rows(*_padded(chunk.column(1), chunk.column(2), width))
                client.hset(key, mapping={n: r.tobytes() for n, r in zip(names, rows, strict=True)})
                written += len(names)
    yield pa.RecordBatch.from_pydict({"rows": [written]}, schema=pa.schema([("rows", pa.int64())]))
