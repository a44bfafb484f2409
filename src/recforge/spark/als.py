"""``SparkALS``: recforge's ALS on a Spark cluster, block-partitioned as Spark's own ALS.

The maths are :class:`recforge.ALS`'s (its docstring states the objective); the layout is
Spark MLlib's (:mod:`recforge.spark.blocks` describes the blocks):

1. **Vocabularies** are the sorted distinct ids, as local training builds them, so the result
   is the same model (and artifact) a local fit on the same pairs gives; the ratings are mapped
   to dense indices against the broadcast vocabularies.
2. **Blocks, built once** (``partitionRatings`` + ``makeBlocks``): each input partition cuts its
   ratings into partial rating blocks per (user block, item block) pair (Arrow, in the Python
   workers); a shuffle gathers each pair, whose duplicates are summed in a fixed order; each pair
   becomes a piece for its user block and one for its item block; a shuffle per side gathers the
   pieces into the cached in-blocks and out-blocks.
3. **A half-iteration** (``computeFactors``): the source side's Gram matrix ``G`` (the blocks'
   parts ``Y_b^T Y_b``, summed on the driver in block order) gives the rotation ``Q`` of local
   training; every source block rotates its factors by ``Q`` and ships to each destination
   block only the rows that block needs (one shuffle keyed by destination block); every
   destination block joins what it got with its cached in-block (and its previous factors,
   CG's start, rotated by ``Q``) without a shuffle, solves its rows with recforge's numba
   kernels pinned to the task's cores, rotates back, keeps the result cached for the next half
   and hands its part of the next Gram matrix to an accumulator: one Spark job per half.
4. **Lineage** is cut by checkpointing both factor RDDs every ``checkpoint_interval`` iterations
   when the context has a checkpoint directory (``SparkContext.setCheckpointDir``), as MLlib does
   (but not after the last iteration, whose factors are collected at once).
5. **Output**: the factors, the vocabularies and the seen pairs are collected into a fitted
   :class:`recforge.ALS`, so ``save``, artifacts and serving work unchanged.

Same seed, same initial factors: the driver draws them with the function ``ALS.fit`` uses
(:func:`recforge.models.als_solve.initial_factors`), and every half-iteration is the same
:class:`~recforge.models.als_solve.HalfStep` solved by the same
:func:`~recforge.models.als_solve.solve_rows`. Results are deterministic for a given input
partitioning and block counts (shipped blocks are concatenated in source order, duplicates summed
in input order, Grams summed in block order); they match a local fit to rounding (the Grams are
summed per block, and local training keeps its factors in the rotated basis), not bit for bit. A
failed task is retried by Spark and recomputes the same bits.

Differences from local ``ALS.fit``: the input is pairs, not ``Interactions``. For implicit
feedback, duplicate pairs are summed and pairs whose sum is not positive are dropped (as
``Interactions.from_events`` does); for explicit ratings duplicates are summed too and every
pair is kept. ``seen_`` holds the pairs trained on.

**Progress.** Each iteration is logged (logger ``recforge.spark``) with its seconds, and with a
``callback`` (as ``ALS.fit`` takes one) also with the objective ``L`` after it: the solve tasks
add up their rows' parts of it (:func:`recforge.kernels.als.als_loss_part`, on what they already
hold) and hand them to the driver with their Gram parts, so the loss costs no extra job. The
callback's :class:`~recforge.models.base.FitProgress` carries the unfitted model (the factors
stay on the executors until the end); returning ``True`` stops after that iteration.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from recforge._numba import thread_limits
from recforge._validation import check_number, check_random_state
from recforge.data.vocabulary import Vocabulary
from recforge.kernels import als as kernels
from recforge.models.als import ALS
from recforge.models.als_solve import HalfStep, check_failures, initial_factors
from recforge.models.base import FitProgress
from recforge.spark import blocks
from recforge.spark.pairs import IdIndex, checked_ratings, pair_chunks, pair_columns
from recforge.spark.session import (
    block_of,
    check_executors,
    inject_failure,
    require_pyspark,
    task_threads,
    zip_partitions,
)

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext
    from pyspark.sql import DataFrame

__all__ = ["SparkALS"]

log = logging.getLogger("recforge.spark")

_PAIR_SCHEMA = "pair int, part int, seq int, users binary, items binary, values binary"


class SparkALS:
    """Fit :class:`recforge.ALS` on a Spark DataFrame of ``(user, item, value)`` rows.

    ``SparkALS(ALS(factors=32, ...))`` fits that model's hyperparameters;
    ``SparkALS(factors=32, ...)`` those of ``ALS(factors=32, ...)`` (same names, defaults and
    meaning; ``num_threads=0`` means ``spark.task.cpus`` threads per task), not both. The
    Spark-only settings are ``num_user_blocks`` / ``num_item_blocks`` (how many blocks each side
    is cut into: the parallelism of a half-iteration) and ``checkpoint_interval`` (iterations
    between checkpoints of the factors, none after the last; ``None``: never). ``fit`` returns a
    fitted ``ALS``.
    """

    def __init__(
        self,
        als: ALS | None = None,
        *,
        num_user_blocks: int = 10,
        num_item_blocks: int = 10,
        checkpoint_interval: int | None = 10,
        **als_params: Any,
    ) -> None:
        if als is None:
            als = ALS(**als_params)
        elif not isinstance(als, ALS):
            raise TypeError(f"SparkALS fits a recforge.ALS, got {als!r}")
        elif als_params:
            raise TypeError(f"give SparkALS an ALS or ALS parameters, not both (got {sorted(als_params)})")
        self._als = als.clone()
        self.num_user_blocks = num_user_blocks
        self.num_item_blocks = num_item_blocks
        self.checkpoint_interval = checkpoint_interval

    @property
    def als(self) -> ALS:
        """An unfitted copy of the ``ALS`` this fits (its hyperparameters)."""
        return self._als.clone()

    def als_params(self) -> dict[str, Any]:
        """The hyperparameters the fitted ``ALS`` carries (all but the Spark ones)."""
        return self._als.get_params()

    def __repr__(self) -> str:
        return (
            f"SparkALS({self._als!r}, num_user_blocks={self.num_user_blocks!r}, "
            f"num_item_blocks={self.num_item_blocks!r}, checkpoint_interval={self.checkpoint_interval!r})"
        )

    def _validate_params(self) -> ALS:
        """An unfitted ``ALS`` with the validated hyperparameters, the Spark settings checked."""
        model = self._als.clone()
        model._validate_params()
        check_number("num_user_blocks", self.num_user_blocks, integer=True, low=1)
        check_number("num_item_blocks", self.num_item_blocks, integer=True, low=1)
        if self.checkpoint_interval is not None:
            check_number("checkpoint_interval", self.checkpoint_interval, integer=True, low=1)
        return model

    # fitting -----------------------------------------------------------------------------------
    def fit(
        self,
        ratings: DataFrame,
        user_col: str = "user",
        item_col: str = "item",
        value_col: str | None = "value",
        callback: Callable[[FitProgress], bool | None] | None = None,
    ) -> ALS:
        """Fit on ``ratings``; ids are strings or integers (integers become their decimal
        strings, as event ids are), ``value_col`` a number (``None``: every row counts 1).
        ``callback`` as in :meth:`ALS.fit <recforge.ALS.fit>` (module doc). Returns the fitted
        ``ALS``."""
        self._validate_params()
        require_pyspark()
        check_executors(ratings.sparkSession.sparkContext)
        frame, users, items = checked_ratings(ratings, user_col, item_col, value_col)
        try:
            return self._fit(frame, users, items, IdIndex(frame, users, items), callback)
        finally:
            frame.unpersist()

    def fit_indexed(
        self,
        pairs: DataFrame,
        users: Vocabulary,
        items: Vocabulary,
        callback: Callable[[FitProgress], bool | None] | None = None,
    ) -> ALS:
        """Fit on indexed pairs ``(u int, i int, value double)`` (:mod:`recforge.spark.pairs`)
        whose indices point into ``users`` and ``items``; the model's vocabularies are those."""
        return self._fit(pairs, users, items, None, callback)

    def _fit(
        self,
        pairs: DataFrame,
        users: Vocabulary,
        items: Vocabulary,
        index: IdIndex | None,
        callback: Callable[[FitProgress], bool | None] | None,
    ) -> ALS:
        model = self._validate_params()
        require_pyspark()
        sc = pairs.sparkSession.sparkContext
        check_executors(sc)
        started = time.perf_counter()
        layout = _Layout(len(users), len(items), int(self.num_user_blocks), int(self.num_item_blocks))
        data = _BlockData.build(pairs, layout, bool(model.implicit), index)
        log.info(
            "SparkALS: %s users x %s items in %d x %d blocks, built in %.1f s",
            f"{len(users):,}",
            f"{len(items):,}",
            layout.user_blocks,
            layout.item_blocks,
            time.perf_counter() - started,
        )
        try:
            iterations = _Iterations(model, self.checkpoint_interval, sc, layout, data, callback)
            user_factors, item_factors = iterations.run()
            seen = data.seen(layout)
        finally:
            data.unpersist()
        model.users_ = users
        model.items_ = items
        model.seen_ = seen
        model.user_factors_ = user_factors
        model.item_factors_ = item_factors
        return model


# blocks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    n_users: int
    n_items: int
    user_blocks: int
    item_blocks: int


def _pair_task(
    n_user_blocks: int, n_item_blocks: int, index: IdIndex | None, batches: Iterator[Any]
) -> Iterator[Any]:
    """Executor: an input partition's ratings (indexed here with ``index``, if given) as partial
    rating blocks (Arrow rows of bytes)."""
    import pyarrow as pa
    from pyspark import TaskContext

    context = TaskContext.get()
    part = context.partitionId() if context is not None else 0
    for seq, (u, i, v) in enumerate(pair_chunks(batches, index)):
        cut = blocks.split_pairs(u, i, v, n_user_blocks, n_item_blocks)
        yield pa.RecordBatch.from_pydict(
            {
                "pair": pa.array([c[0] for c in cut], pa.int32()),
                "part": pa.array([part] * len(cut), pa.int32()),
                "seq": pa.array([seq] * len(cut), pa.int32()),
                "users": pa.array([c[1].tobytes() for c in cut], pa.binary()),
                "items": pa.array([c[2].tobytes() for c in cut], pa.binary()),
                "values": pa.array([c[3].tobytes() for c in cut], pa.binary()),
            }
        )


def _pair_record(row: Any) -> tuple[int, tuple[int, int, bytes, bytes, bytes]]:
    return int(row[0]), (int(row[1]), int(row[2]), bytes(row[3]), bytes(row[4]), bytes(row[5]))


def _link_task(
    layout: _Layout, implicit: bool, records: Iterator[tuple[int, tuple[int, int, bytes, bytes, bytes]]]
) -> Iterator[tuple[tuple[int, int], blocks.Piece]]:
    """Executor: merge each rating block's partial blocks (in input order) and cut it into its
    user piece (key ``(0, b)``) and item piece (key ``(1, c)``)."""
    by_pair: dict[int, list[tuple[int, int, bytes, bytes, bytes]]] = {}
    for pair, record in records:
        by_pair.setdefault(pair, []).append(record)
    for pair, parts in sorted(by_pair.items()):
        parts.sort(key=lambda r: (r[0], r[1]))
        u, i, v = blocks.merge_pairs(
            [
                (
                    np.frombuffer(r[2], np.int32),
                    np.frombuffer(r[3], np.int32),
                    np.frombuffer(r[4], np.float64),
                )
                for r in parts
            ]
        )
        if implicit:
            keep = v > 0
            u, i, v = u[keep], i[keep], v[keep]
        if not len(u):
            continue
        b, c = divmod(pair, layout.item_blocks)
        user_piece, item_piece = blocks.link(b, c, u, i, v, layout.user_blocks, layout.item_blocks)
        yield (0, b), user_piece
        yield (1, c), item_piece


def _assemble_task(
    n_rows: int, n_blocks: int, n_other_blocks: int, block: int, pieces: Iterator[tuple[int, blocks.Piece]]
) -> Iterator[tuple[int, blocks.InBlock | blocks.OutBlock | blocks.SeenBlock]]:
    """Executor: a block's in-, out- and seen-block from its pieces."""
    assembled = blocks.assemble(
        [p for _, p in pieces], block, blocks.block_rows(n_rows, n_blocks, block), n_other_blocks
    )
    for part in assembled:
        yield block, part


def _of_side(side: int, kv: tuple[tuple[int, int], blocks.Piece]) -> bool:
    return kv[0][0] == side


def _by_block(kv: tuple[tuple[int, int], blocks.Piece]) -> tuple[int, blocks.Piece]:
    return kv[0][1], kv[1]


def _select(kind: type, items: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    return (kv for kv in items if isinstance(kv[1], kind))


def materialize(rdd: RDD[Any]) -> None:
    """Compute (and so cache) every partition of a persisted RDD without reading it back into
    Python: ``count`` on the JVM side, over the serialized batches."""
    rdd._jrdd.count()


class _BlockData:
    """The cached in- and out-blocks of both sides, and the users' seen items."""

    def __init__(
        self, user_in: RDD[Any], user_out: RDD[Any], item_in: RDD[Any], item_out: RDD[Any], seen: RDD[Any]
    ) -> None:
        self.user_in, self.user_out, self.item_in, self.item_out = user_in, user_out, item_in, item_out
        self.seen_blocks = seen

    @classmethod
    def build(cls, ratings: DataFrame, layout: _Layout, implicit: bool, index: IdIndex | None) -> _BlockData:
        """From indexed pairs ``(u, i, value)`` or, with ``index``, ratings ``(user, item, value)``."""
        pairs = ratings.select(*pair_columns(index)).mapInArrow(
            functools.partial(_pair_task, layout.user_blocks, layout.item_blocks, index), _PAIR_SCHEMA
        )
        pieces = (
            pairs.rdd.map(_pair_record)
            .partitionBy(layout.user_blocks * layout.item_blocks, block_of)
            .mapPartitions(functools.partial(_link_task, layout, implicit))
            .persist()
        )
        sides: list[RDD[Any]] = []
        for side, n_rows, n_blocks, n_other in (
            (0, layout.n_users, layout.user_blocks, layout.item_blocks),
            (1, layout.n_items, layout.item_blocks, layout.user_blocks),
        ):
            assembled = (
                pieces.filter(functools.partial(_of_side, side))
                .map(_by_block)
                .partitionBy(n_blocks, block_of)
                .mapPartitionsWithIndex(
                    functools.partial(_assemble_task, n_rows, n_blocks, n_other), preservesPartitioning=True
                )
                .persist()
            )
            kinds = (blocks.InBlock, blocks.OutBlock) + ((blocks.SeenBlock,) if side == 0 else ())
            selected = [
                assembled.mapPartitions(
                    functools.partial(_select, kind), preservesPartitioning=True
                ).persist()
                for kind in kinds
            ]
            materialize(zip_partitions(*selected))  # one job computes (and caches) them all
            sides.extend(selected)
            assembled.unpersist()
        pieces.unpersist()
        user_in, user_out, seen, item_in, item_out = sides
        return cls(user_in, user_out, item_in, item_out, seen)

    def seen(self, layout: _Layout) -> sp.csr_matrix:
        """The users x items CSR matrix of the pairs trained on (values ``r``), on the driver."""
        rows, columns, values = [], [], []
        for block in self.seen_blocks.values().collect():
            local = np.repeat(np.arange(len(block.indptr) - 1, dtype=np.int64), np.diff(block.indptr))
            rows.append(local * layout.user_blocks + block.block)
            columns.append(block.columns)
            values.append(block.data)
        matrix = sp.csr_matrix(
            (np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
            shape=(layout.n_users, layout.n_items),
            dtype=np.float32,
        )
        matrix.sort_indices()
        return matrix

    def unpersist(self) -> None:
        for rdd in (self.user_in, self.user_out, self.item_in, self.item_out, self.seen_blocks):
            rdd.unpersist()


# iterations ----------------------------------------------------------------------------------
def _ship_task(
    rotation: np.ndarray | None, items: Iterable[tuple[int, Any]]
) -> Iterator[tuple[int, blocks.Shipped]]:
    """Executor: a source block's factors, rotated by the half-step's ``Q``, sliced per
    destination block."""
    out = factors = None
    for _, value in items:
        if isinstance(value, blocks.OutBlock):
            out = value
        elif isinstance(value, blocks.FactorBlock):
            factors = value
    if out is None or factors is None:
        raise RuntimeError("a source block lacks its out-block or its factors")
    yield from blocks.ship(factors, out, rotation)


#: a block's part of the Gram matrix of its new factors (implicit feedback; else ``None``) and
#: of the loss (0 unless asked for)
_Part = tuple[np.ndarray | None, float]


class _BlockParts:
    """The ``AccumulatorParam`` of ``{block: part}`` that the solve tasks hand their parts to.
    A block computed twice (a retried task, a lost cache) gives the same bits and replaces its
    part, so nothing counts twice."""

    def zero(self, value: dict[int, _Part]) -> dict[int, _Part]:
        return {}

    def addInPlace(self, parts: dict[int, _Part], more: dict[int, _Part]) -> dict[int, _Part]:
        parts.update(more)
        return parts


def _solve_task(
    step: HalfStep, threads: int, failures: Any, parts: Any, loss: str, items: Iterator[tuple[int, Any]]
) -> Iterator[tuple[int, blocks.FactorBlock]]:
    """Executor: a destination block's new factors from what was shipped to it. Its part of the
    next half's Gram matrix (implicit feedback) and, with ``loss`` (``"penalty"`` or
    ``"entries"``), of the objective go to the accumulator ``parts``."""
    inject_failure("solve")
    shipped: list[blocks.Shipped] = []
    in_block = previous = None
    for _, value in items:
        if isinstance(value, blocks.Shipped):
            shipped.append(value)
        elif isinstance(value, blocks.InBlock):
            in_block = value
        elif isinstance(value, blocks.FactorBlock):
            previous = value
    if in_block is None:
        raise RuntimeError("a destination block lacks its in-block")
    Y = blocks.gather(in_block, shipped, step.factors, step.dtype)
    solved, failed = blocks.solve_block(in_block, Y, previous, step, task_threads(threads))
    if failed:
        failures.add(failed)
    part = 0.0
    if loss:
        entries = loss == "entries"
        rotation = () if step.rotation is None or not entries else (step.rotation,)
        with thread_limits(blas_threads=1):
            X = blocks.rotate(solved.values, rotation)  # in Y's basis: the same products
        part = kernels.als_loss_part(
            in_block.indptr,
            in_block.indices,
            in_block.data,
            X,
            Y if entries else Y[:0],
            step.row_regularization(in_block.indptr, in_block.data),
            step.alpha,
            step.unobserved,
            step.implicit,
            entries=entries,
        )
    parts.add({in_block.block: (_gram_of(solved.values) if step.implicit else None, part)})
    yield in_block.block, solved


def _gram_of(factors: np.ndarray) -> np.ndarray:
    """A block's ``Y_b^T Y_b`` (float64), BLAS on one thread."""
    with thread_limits(blas_threads=1):
        return kernels.gram_matrix(factors)


def _values(kv: tuple[int, blocks.FactorBlock]) -> tuple[int, np.ndarray]:
    return kv[0], kv[1].values


class _Iterations:
    """The driver's loop: two half-iterations per iteration, one Spark job per half."""

    def __init__(
        self,
        model: ALS,
        checkpoint_interval: int | None,
        sc: SparkContext,
        layout: _Layout,
        data: _BlockData,
        callback: Callable[[FitProgress], bool | None] | None = None,
    ) -> None:
        self.model = model
        self.callback = callback
        self.checkpoint_interval = checkpoint_interval
        self.sc = sc
        self.layout = layout
        self.data = data
        self.template = HalfStep.of(model)
        self.dtype = self.template.dtype
        self.checkpoints: list[str] = []
        self.failures = sc.accumulator(0)

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        with thread_limits(blas_threads=1):  # the driver's few products, as the executors'
            return self._run()

    def _run(self) -> tuple[np.ndarray, np.ndarray]:
        model, layout, template = self.model, self.layout, self.template
        rng = check_random_state(model.random_state)
        users, items = initial_factors(
            rng, layout.n_users, layout.n_items, template.factors, self.dtype, template.initial_scale
        )
        if model.iterations == 0:
            return users, items
        U = self._distribute(users, layout.user_blocks)
        V = self._distribute(items, layout.item_blocks)
        can_checkpoint = bool(self.sc._jsc.sc().getCheckpointDir().isDefined())
        interval = self.checkpoint_interval
        if interval is not None and not can_checkpoint:
            log.info(
                "SparkALS: no checkpoint directory set (SparkContext.setCheckpointDir): not checkpointing"
            )
        start = time.perf_counter()
        data = self.data
        track = self.callback is not None
        try:
            n = layout.item_blocks  # the Gram of the blocks _distribute made, as a half sums it
            item_gram = (
                self._sum_grams([_gram_of(np.ascontiguousarray(items[b::n])) for b in range(n)])
                if template.implicit
                else None
            )
            del users, items
            for iteration in range(model.iterations):
                # none after the last iteration: no later one has a lineage to cut
                checkpoint = (
                    can_checkpoint
                    and interval is not None
                    and (iteration + 1) % interval == 0
                    and iteration + 1 < model.iterations
                )
                item_step = template.with_gram(item_gram, layout.n_items)
                U_new, user_gram, user_loss = self._half(
                    V, data.item_out, U, data.user_in, layout.user_blocks, item_step, checkpoint, "penalty"
                )
                user_step = template.with_gram(user_gram, layout.n_users)
                U.unpersist()
                U = U_new
                V_new, item_gram, item_loss = self._half(
                    U, data.user_out, V, data.item_in, layout.item_blocks, user_step, checkpoint, "entries"
                )
                V.unpersist()
                V = V_new
                self._check_failures()
                if checkpoint:
                    self._forget_checkpoints(keep=(U, V))
                elapsed = time.perf_counter() - start
                if not track:
                    log.info("SparkALS: iteration %d/%d, %.1f s", iteration + 1, model.iterations, elapsed)
                    continue
                loss = user_loss + item_loss
                if user_gram is not None and item_gram is not None:
                    loss += model.unobserved_weight * float(np.sum(user_gram * item_gram))
                log.info(
                    "SparkALS: iteration %d/%d, loss %.6g, %.1f s",
                    iteration + 1,
                    model.iterations,
                    loss,
                    elapsed,
                )
                assert self.callback is not None
                progress = FitProgress(
                    iteration + 1, model.iterations, elapsed, model, functools.partial(float, loss)
                )
                if self.callback(progress):
                    break
            users, items = self._collect(U, layout.n_users), self._collect(V, layout.n_items)
            return self._final_basis(users, items, user_step)
        finally:
            U.unpersist()
            V.unpersist()
            self._forget_checkpoints(keep=())

    def _distribute(self, factors: np.ndarray, n_blocks: int) -> RDD[Any]:
        parts = [
            (b, blocks.FactorBlock(b, np.ascontiguousarray(factors[b::n_blocks]))) for b in range(n_blocks)
        ]
        return self.sc.parallelize(parts, n_blocks).partitionBy(n_blocks, block_of).persist()

    @staticmethod
    def _sum_grams(grams: list[np.ndarray]) -> np.ndarray:
        """``G = sum_b Y_b^T Y_b``, summed in block order (the same factors, the same bits)."""
        total = np.zeros_like(grams[0])
        for gram in grams:
            total += gram
        return total

    def _half(
        self,
        src: RDD[Any],
        src_out: RDD[Any],
        dst: RDD[Any],
        dst_in: RDD[Any],
        n_dst: int,
        step: HalfStep,
        checkpoint: bool,
        loss: str,
    ) -> tuple[RDD[Any], np.ndarray | None, float]:
        """The ``dst`` side's new factors against ``src`` (computed, cached) in one Spark job,
        their Gram matrix ``G`` (implicit feedback; else ``None``) and, when a callback follows
        the fit, their part of the loss (``loss`` names it). The solve tasks hand their blocks'
        parts to an accumulator, summed here in block order, so the result does not depend on
        task timing and no second job reads the factors back."""
        ship = functools.partial(_ship_task, step.rotation)
        shipped = zip_partitions(src_out, src).mapPartitions(ship)  # keys: destination blocks
        shipped = shipped.partitionBy(n_dst, block_of)
        inputs = [shipped, dst_in, dst] if step.warm_start else [shipped, dst_in]
        loss = loss if self.callback is not None else ""
        parts_param: Any = _BlockParts()  # an AccumulatorParam by duck typing (pyspark stays lazy)
        accumulator = self.sc.accumulator({}, parts_param)
        solve = functools.partial(
            _solve_task, step, int(self.model.num_threads), self.failures, accumulator, loss
        )
        solved = zip_partitions(*inputs).mapPartitions(solve, preservesPartitioning=True).persist()
        if checkpoint:
            solved.checkpoint()
        materialize(solved)
        parts: dict[int, _Part] = accumulator.value
        if sorted(parts) != list(range(n_dst)):
            raise RuntimeError(f"the Gram matrix needs a part from each of {n_dst} blocks")
        grams = [parts[block][0] for block in range(n_dst)]
        gram = self._sum_grams(grams) if step.implicit else None  # type: ignore[arg-type]
        return solved, gram, sum(parts[block][1] for block in range(n_dst))

    def _check_failures(self) -> None:
        check_failures(int(self.failures.value), self.template)

    def _collect(self, factors: RDD[Any], n: int) -> np.ndarray:
        n_blocks = factors.getNumPartitions()
        out = np.empty((n, self.template.factors), dtype=self.dtype)
        for b, values in factors.map(_values).collect():
            out[b::n_blocks] = values
        return out

    def _final_basis(
        self, users: np.ndarray, items: np.ndarray, step: HalfStep
    ) -> tuple[np.ndarray, np.ndarray]:
        """Express both in the basis the last item half solved in (the eigenbasis of the users'
        Gram matrix), as local training leaves its factors (implicit feedback, not NNLS)."""
        if step.rotation is None:
            return users, items
        Q = (step.rotation,)
        return blocks.rotate(users, Q), blocks.rotate(items, Q)

    def _forget_checkpoints(self, keep: tuple[RDD[Any], ...]) -> None:
        """Delete the checkpoint files of earlier checkpoints (MLlib's
        ``deletePreviousCheckpointFile``), all but those of ``keep``."""
        current = [rdd.getCheckpointFile() for rdd in keep]
        jvm = self.sc._jvm
        assert jvm is not None
        conf = self.sc._jsc.hadoopConfiguration()
        for name in self.checkpoints:
            if name not in current:
                path = jvm.org.apache.hadoop.fs.Path(name)
                path.getFileSystem(conf).delete(path, True)
        self.checkpoints = [c for c in current if c]
