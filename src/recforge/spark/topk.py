"""Batch top-K on Spark: a model's item side broadcast, its users in chunks, its own top-K per task.

Any fitted recforge model works (``ALS``, ``BPR``, ``ItemKNN``, ``Popular``): the driver splits
it in two. What it holds per user (its rows of :data:`USER_STATE`, the seen items, the ids) is
cut into chunks of ``chunk_rows`` users, one pickled row each of a DataFrame that Spark spreads
over its tasks; everything else (item factors, ``ItemKNN``'s neighbour lists, popularity) is
broadcast once. Each task puts a chunk back into the broadcast model, a model of just those
users, and calls its public ``recommend`` (or ``similar_items`` for a chunk of items), pinned
to the task's cores: the code local precomputation runs, so the same lists. It emits one
output row per user (or item)::

    user (or item) string    the external id
    index int                its dense index in the model's vocabulary
    items list<int>          the recommended items' dense indices, best first (no padding)
    scores list<float>       their scores

Item indices, not ids, because that is what the model artifact and the Redis list store hold
(``model.items_`` names them). Memory per task is one chunk plus the model's top-K buffers (for
factor models the bounded tiles of :mod:`recforge.topk`), never a users x items matrix.
:func:`write_redis` copies such lists straight from the executors into the Redis list store
serving reads (:mod:`recforge.lists`); :func:`lists_array` reads them back as the artifact's
padded ``[n, k]`` arrays; :func:`recommend_lists` collects the lists of some users (an
evaluation's) on the driver.
"""

from __future__ import annotations

import copy
import functools
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recforge.data.vocabulary import Vocabulary
from recforge.lists import encode_rows, redis_client, redis_key, translate_errors
from recforge.models.base import Recommender
from recforge.spark.session import check_executors, inject_failure, require_pyspark, task_threads

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "USER_STATE",
    "RedisTarget",
    "lists_array",
    "recommend_all_users",
    "recommend_lists",
    "similar_items_all_items",
    "write_redis",
]

#: rows per chunk (one DataFrame row, one unit of work for a task)
CHUNK_ROWS = 8192
#: what a fitted model holds per user, row ``u`` for user ``u`` (besides ``seen_``): factor
#: models' ``user_factors_``, ``ItemKNN``'s ``user_weights_``; these travel in chunks
USER_STATE = ("user_factors_", "user_weights_")
_CHUNK_SCHEMA = pa.schema([("payload", pa.large_binary())])


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


@dataclass(frozen=True)
class _Chunk:
    """Rows of a model's users (or items): dense indices, external ids, per-user state."""

    index: np.ndarray
    ids: pa.Array
    state: dict[str, Any]
    seen: sp.csr_matrix | None

    def user_view(self, shell: Recommender, threads: int) -> Recommender:
        """The broadcast model with these users only (row ``r``: ``index[r]``)."""
        view = copy.copy(shell)
        for name, value in self.state.items():
            setattr(view, name, value)
        view.users_ = Vocabulary(self.ids)
        view.seen_ = (
            self.seen if self.seen is not None else sp.csr_matrix((len(self.index), len(shell.items_)))
        )
        view.num_threads = task_threads(threads)
        return view


# driver -------------------------------------------------------------------------------------
def recommend_all_users(
    spark: SparkSession,
    model: Recommender,
    k: int = 10,
    *,
    filter_seen: bool = True,
    users: np.ndarray | None = None,
    path: str | Path | None = None,
    chunk_rows: int = CHUNK_ROWS,
    num_threads: int = 0,
) -> DataFrame:
    """Top-``k`` items for every user of a fitted model (or the dense indices ``users``), as
    ``recommend(filter_seen=...)`` computes them, one output row per user (module doc).

    With ``path`` the lists are written there as Parquet (overwriting) and the returned frame
    reads them; without, the frame is computed when used. ``num_threads`` numba threads per task
    (``0``: ``spark.task.cpus``).
    """
    model._check_fitted()
    rows = np.arange(len(model.users_), dtype=np.int32) if users is None else np.asarray(users, np.int32)
    chunks = _user_chunks(spark, model, rows, filter_seen, chunk_rows)
    task = functools.partial(
        _recommend_task,
        spark.sparkContext.broadcast(_item_side(model)),
        int(k),
        filter_seen,
        int(num_threads),
    )
    return _finish(spark, chunks.mapInArrow(task, _lists_schema("user")), path)


def similar_items_all_items(
    spark: SparkSession,
    model: Recommender,
    k: int = 10,
    *,
    path: str | Path | None = None,
    chunk_rows: int = CHUNK_ROWS,
    num_threads: int = 0,
) -> DataFrame:
    """The ``k`` most similar items of every item (never the item itself), as the model's
    ``similar_items`` computes them, one output row per item (module doc)."""
    model._check_fitted()
    n = len(model.items_)
    payloads = [
        _Chunk(
            np.arange(start, min(start + chunk_rows, n), dtype=np.int32),
            _slice(model.items_, start, chunk_rows),
            {},
            None,
        )
        for start in range(0, n, _positive(chunk_rows))
    ]
    task = functools.partial(
        _similar_task, spark.sparkContext.broadcast(_item_side(model)), int(k), int(num_threads)
    )
    return _finish(spark, _frame(spark, payloads).mapInArrow(task, _lists_schema("item")), path)


def recommend_lists(
    spark: SparkSession, model: Recommender, users: np.ndarray, k: int, *, chunk_rows: int = CHUNK_ROWS
) -> np.ndarray:
    """The top-``k`` (seen items filtered) of the dense user indices ``users``, computed on the
    executors and collected: ``int32 [len(users), k]``, padding ``-1``, row for row ``users``
    (what :meth:`Evaluator.recommend <recforge.evaluation.Evaluator.recommend>` computes)."""
    users = np.asarray(users, dtype=np.int32)
    lists = recommend_all_users(spark, model, k, users=users, chunk_rows=chunk_rows)
    ids = np.full((len(users), k), -1, dtype=np.int32)
    table = lists.select("index", "items", "scores").toArrow()
    if table.num_rows:
        position = np.full(len(model.users_), -1, dtype=np.int64)
        position[users] = np.arange(len(users))
        where = position[table.column("index").to_numpy()]
        ids[where] = _padded(table.column("items"), table.column("scores"), k)[0]
    return ids


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


def _positive(chunk_rows: int) -> int:
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return int(chunk_rows)


def _slice(vocab: Vocabulary, start: int, rows: int) -> pa.Array:
    return vocab.array.slice(start, rows)


def _item_side(model: Recommender) -> Recommender:
    """A shallow copy of ``model`` without what it holds per user: what every task shares."""
    shell = copy.copy(model)
    for name in (*USER_STATE, "seen_", "users_"):
        if hasattr(shell, name):
            setattr(shell, name, None)
    return shell


def _user_chunks(
    spark: SparkSession, model: Recommender, users: np.ndarray, filter_seen: bool, chunk_rows: int
) -> DataFrame:
    """One pickled :class:`_Chunk` per ``chunk_rows`` of ``users``: their per-user state."""
    step = _positive(chunk_rows)
    state = [name for name in USER_STATE if hasattr(model, name)]
    payloads = []
    for start in range(0, len(users), step):
        rows = users[start : start + step]
        payloads.append(
            _Chunk(
                rows,
                pa.array(model.users_.ids(rows), pa.large_string()),
                {name: getattr(model, name)[rows] for name in state},
                model.seen_[rows] if filter_seen else None,
            )
        )
    return _frame(spark, payloads)


def _frame(spark: SparkSession, payloads: list[_Chunk]) -> DataFrame:
    require_pyspark()
    check_executors(spark.sparkContext)
    blobs = [pickle.dumps(p, protocol=pickle.HIGHEST_PROTOCOL) for p in payloads]
    table = pa.table({"payload": pa.array(blobs, pa.large_binary())}, schema=_CHUNK_SCHEMA)
    return spark.createDataFrame(table).repartition(max(1, len(blobs)))


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
def _chunks_of(batches: Iterable[pa.RecordBatch]) -> Iterator[_Chunk]:
    for batch in batches:
        for payload in batch.column("payload").to_pylist():
            yield pickle.loads(payload)


def _lists_batch(key: str, chunk: _Chunk, top: np.ndarray, values: np.ndarray) -> pa.RecordBatch:
    """Output rows for a chunk: padding (``-1``) dropped, lists ragged."""
    valid = top >= 0
    offsets = np.zeros(len(top) + 1, dtype=np.int32)
    np.cumsum(valid.sum(axis=1), out=offsets[1:])
    return pa.RecordBatch.from_arrays(
        [
            chunk.ids.cast(pa.string()),
            pa.array(chunk.index.astype(np.int32)),
            pa.ListArray.from_arrays(pa.array(offsets), pa.array(top[valid].astype(np.int32))),
            pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[valid].astype(np.float32))),
        ],
        names=[key, "index", "items", "scores"],
    )


def _recommend_task(
    shell: Any, k: int, filter_seen: bool, threads: int, batches: Iterable[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    inject_failure("topk")
    for chunk in _chunks_of(batches):
        view = chunk.user_view(shell.value, threads)
        top, values = view.recommend(np.arange(len(chunk.index), dtype=np.int32), k, filter_seen=filter_seen)
        yield _lists_batch("user", chunk, top, values)


def _similar_task(
    shell: Any, k: int, threads: int, batches: Iterable[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    inject_failure("topk")
    model = copy.copy(shell.value)
    model.num_threads = task_threads(threads)
    for chunk in _chunks_of(batches):
        top, values = model.similar_items(chunk.index, k)
        yield _lists_batch("item", chunk, top, values)


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
