"""The pipeline's build on Spark: the temporal holdout split of the event store's segments.

:func:`holdout_split` computes what :func:`recforge.pipeline.holdout.split_events` computes on
one machine, as Spark jobs over the segments read in place (:func:`~recforge.spark.build.store_frame`),
the events a local build reads (:func:`~recforge.spark.build.readable_events`: none after now,
no load-test or erased ones):

* the **cut**: a time, a span before the newest event, or for a fraction ``f`` of ``N`` events
  the timestamp at position ``N - round(f N)`` in time order, found exactly from an approximate
  quantile bracket (:func:`kth_smallest`: one pass counts what lies below the bracket, a second
  fetches the few timestamps inside it);
* the **train part**: events before the cut, weighted by the one
  :class:`~recforge.weighting.Weighting` as a Spark expression
  (:func:`~recforge.spark.build.strength_column`), ages from the cut, summed per
  pair; vocabularies the sorted distinct ids; the latest rating per pair when there are ratings;
* the **test part**: events at or after the cut, the same weights without decay, on the train
  vocabularies (events of unknown users or items dropped and counted);
* the split's report (:meth:`recforge.evaluation.splits.Split.summary`'s keys).

The driver receives the aggregated pairs (one row per pair, not per event) and vocabularies and
assembles the CSR matrices the trainers read (:class:`~recforge.data.Interactions`). The sums
are float64 on Spark in another order than NumPy's, and Spark's ``pow`` is not NumPy's
``exp2``: ``r`` equals the local build's to float32 rounding (the same bits for almost every
pair; see ``tests/spark/test_holdout.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recforge._time import iso, iso_from_us, to_us
from recforge.config import Config
from recforge.data.interactions import FORMAT_VERSION, Interactions
from recforge.data.store import EventStore
from recforge.data.vocabulary import Vocabulary
from recforge.errors import RecforgeError
from recforge.pipeline.engine import Built
from recforge.pipeline.holdout import Holdout
from recforge.spark.build import latest_ratings, readable_events, store_frame, strength_column
from recforge.spark.pairs import vocabularies
from recforge.weighting import Weighting

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["holdout_split", "kth_smallest"]

log = logging.getLogger("recforge.spark")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEVER = int(np.iinfo(np.int64).max)
#: the most timestamps :func:`kth_smallest` fetches to the driver at once
BRACKET_ROWS = 2_000_000


def kth_smallest(frame: DataFrame, column: str, rank: int, total: int) -> int:
    """The value at 0-based position ``rank`` of the integer ``column`` sorted (``total`` rows),
    exactly, without sorting the frame: an approximate quantile bracket around ``rank``, a count
    of the rows below it, the rows inside it fetched and sorted here; the bracket widens until
    it holds the rank."""
    from pyspark.sql import functions as F

    if not 0 <= rank < total:
        raise ValueError(f"rank {rank} outside 0..{total - 1}")
    q = rank / max(total - 1, 1)
    width = max(1e-4, 64 / total)
    value = F.col(column)
    while True:
        low_q, high_q = max(0.0, q - width), min(1.0, q + width)
        low, high = frame.approxQuantile(column, [low_q, high_q], width / 8)
        low = -np.inf if low_q == 0.0 else low
        high = np.inf if high_q == 1.0 else high
        row = frame.agg(F.count_if(value < low), F.count_if((value >= low) & (value <= high))).first()
        assert row is not None
        below, inside = int(row[0]), int(row[1])
        if below <= rank < below + inside and (inside <= BRACKET_ROWS or width >= 1.0):
            values = frame.filter((value >= low) & (value <= high)).select(column).toArrow().column(0)
            return int(np.sort(values.to_numpy())[rank - below])
        width = min(1.0, width * 4)


def holdout_split(spark: SparkSession, home: str | Path, holdout: Holdout, config: Config) -> Built:
    """The temporal holdout split of the home's stored events (see the module doc)."""
    if holdout.per_user is not None:
        raise RecforgeError(
            "the Spark engine splits by time only; a per-user holdout ([pipeline] holdout_per_user) "
            "runs on the local engine"
        )
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    started = time.perf_counter()
    read_at = datetime.now(UTC)  # events stamped later (clock skew) wait for the next build
    stored = readable_events(spark, store_frame(spark, home, order=True), EventStore(home), config, read_at)
    events = stored.withColumn("ts", F.unix_micros(F.col("timestamp")))
    events = events.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        row = events.agg(F.count(F.lit(1)), F.max("ts")).first()
        assert row is not None
        total, newest = int(row[0]), row[1]
        if total == 0:
            raise RecforgeError("no events to split (load-test and erased ones are not); ingest some first")
        cut = _cut(events, holdout, total, int(newest))
        weighting = dataclasses.replace(config.weighting.value(), reference_time=None)
        built = _Split(events, cut, weighting).build(holdout, total)
        built.summary["read_at"] = iso_from_us(to_us(read_at))
    finally:
        events.unpersist()
    log.info(
        "spark build: %s events, cut %s: %s train pairs, %s test pairs (%.1f s)",
        f"{total:,}",
        built.summary["cut"],
        f"{built.train.nnz:,}",
        f"{built.test.nnz:,}",
        time.perf_counter() - started,
    )
    return built


def _cut(events: DataFrame, holdout: Holdout, total: int, newest: int) -> int:
    """The cut in microseconds, as :func:`recforge.evaluation.temporal_split` places it."""
    if holdout.days is not None:
        return to_us(_EPOCH + timedelta(microseconds=newest) - timedelta(days=holdout.days))
    if holdout.at is not None:
        return to_us(holdout.at)
    assert holdout.fraction is not None
    n_test = round(float(holdout.fraction) * total)
    return kth_smallest(events, "ts", total - n_test, total) if n_test else _NEVER


class _Split:
    """The parts of ``events`` (with ``ts``, microseconds) on either side of ``cut``."""

    def __init__(self, events: DataFrame, cut: int, weighting: Weighting) -> None:
        from pyspark.sql import functions as F

        self.events = events
        self.cut = cut
        self.weighting = weighting
        self.train = events.filter(F.col("ts") < cut)
        self.test = events.filter(F.col("ts") >= cut)
        self.spark = events.sparkSession

    def build(self, holdout: Holdout, total: int) -> Built:
        from pyspark.sql import functions as F

        ts, is_test = F.col("ts"), F.col("ts") >= self.cut
        rating = F.col("event_type") == "rating"
        row = self.events.agg(
            F.count_if(is_test),
            F.min(F.when(~is_test, ts)),
            F.max(F.when(~is_test, ts)),
            F.min(F.when(is_test, ts)),
            F.max(F.when(is_test, ts)),
            F.count_if(~is_test & rating),
            F.count_if(is_test & rating),
            F.count_distinct("user_id"),
            F.count_distinct(F.when(is_test, F.col("user_id"))),
        ).first()
        assert row is not None
        n_test = int(row[0])
        cut_text = iso_from_us(self.cut) if self.cut != _NEVER else None
        if n_test == 0 or n_test == total:
            side = "no events after" if n_test == 0 else "no events before"
            raise RecforgeError(f"the holdout cut {cut_text} leaves {side} it; choose another holdout")
        train_first, train_last, test_first, test_last = (int(v) for v in row[1:5])
        has_ratings = (int(row[5]) > 0, int(row[6]) > 0)
        users_without_test = int(row[7]) - int(row[8])

        applied = self.weighting.as_of(_EPOCH + timedelta(microseconds=self.cut))  # as the local split
        users, items = vocabularies(self.train, "user_id", "item_id")
        matrix = self._matrix(
            self._indexed(self._sums(self.train, applied), users, items), users, items, np.float64
        )
        ratings = self._ratings(self.train, users, items) if has_ratings[0] else None
        train = Interactions.from_csr(matrix, users, items, ratings)
        as_of = _EPOCH + timedelta(microseconds=self.cut)
        info = _info(total - n_test, 0, _vanished(matrix, train), train_first, train_last, applied, as_of)
        train = dataclasses.replace(train, info=info)

        unweighted = dataclasses.replace(self.weighting, half_life_days=None)
        known = self._indexed(self._sums(self.test, unweighted), users, items)
        test_matrix = self._matrix(known, users, items, np.float64)
        test_ratings = self._ratings(self.test, users, items) if has_ratings[1] else None
        test = Interactions.from_csr(test_matrix, users, items, test_ratings)
        dropped, only_users, only_items = self._unknown(users, items)
        info = _info(n_test, dropped, _vanished(test_matrix, test), test_first, test_last, unweighted, None)
        test = dataclasses.replace(test, info=info)

        summary: dict[str, Any] = {
            "method": "temporal",
            "cut": cut_text,
            "test_fraction": None if holdout.fraction is None else float(holdout.fraction),
            "weights": train.info.get("weights"),
            "half_life_days": self.weighting.half_life_days,
            "rows": total,
            "train_rows": total - n_test,
            "test_rows": n_test,
            "train_pairs": train.nnz,
            "test_pairs": test.nnz,
            "users": train.n_users,
            "items": train.n_items,
            "test_only_users": only_users,
            "test_only_items": only_items,
            "dropped_test": dropped,
            "users_without_test": users_without_test,
        }
        return Built(train, test, summary)

    # pieces -----------------------------------------------------------------------------------
    @staticmethod
    def _sums(events: DataFrame, weighting: Weighting) -> DataFrame:
        from pyspark.sql import functions as F

        return events.groupBy(F.col("user_id").alias("user"), F.col("item_id").alias("item")).agg(
            F.sum(strength_column(weighting)).alias("value")
        )

    def _index(self, vocab: Vocabulary, name: str) -> DataFrame:
        from pyspark.sql import functions as F

        table = pa.table({name: vocab.array, f"{name}_index": np.arange(len(vocab), dtype=np.int32)})
        return F.broadcast(self.spark.createDataFrame(table))

    def _indexed(self, pairs: DataFrame, users: Vocabulary, items: Vocabulary) -> DataFrame:
        """``(u, i, value)`` of the pairs whose user and item are in the vocabularies."""
        from pyspark.sql import functions as F

        joined = pairs.join(self._index(users, "user"), "user").join(self._index(items, "item"), "item")
        return joined.select(F.col("user_index").alias("u"), F.col("item_index").alias("i"), "value")

    @staticmethod
    def _matrix(pairs: DataFrame, users: Vocabulary, items: Vocabulary, dtype: type) -> sp.csr_matrix:
        table = pairs.toArrow()
        return sp.csr_matrix(
            (
                table.column("value").to_numpy().astype(dtype),
                (table.column("u").to_numpy(), table.column("i").to_numpy()),
            ),
            shape=(len(users), len(items)),
            dtype=dtype,
        )

    def _ratings(self, events: DataFrame, users: Vocabulary, items: Vocabulary) -> sp.csr_matrix:
        latest = self._indexed(latest_ratings(events), users, items)
        return self._matrix(latest, users, items, np.float32)

    def _unknown(self, users: Vocabulary, items: Vocabulary) -> tuple[int, int, int]:
        """Test rows with an unknown user or item; distinct unknown users; distinct unknown items."""
        from pyspark.sql import functions as F

        flagged = (
            self.test.join(self._index(users, "user").withColumnRenamed("user", "user_id"), "user_id", "left")
            .join(self._index(items, "item").withColumnRenamed("item", "item_id"), "item_id", "left")
            .select(
                "user_id",
                "item_id",
                F.col("user_index").isNull().alias("new_user"),
                F.col("item_index").isNull().alias("new_item"),
            )
        )
        row = flagged.agg(
            F.count_if(F.col("new_user") | F.col("new_item")),
            F.count_distinct(F.when(F.col("new_user"), F.col("user_id"))),
            F.count_distinct(F.when(F.col("new_item"), F.col("item_id"))),
        ).first()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])


def _vanished(summed: sp.csr_matrix, part: Interactions) -> int:
    """Pairs whose positive float64 sum rounds to 0 in float32 (as
    :meth:`Interactions.from_events` counts them)."""
    return int(np.count_nonzero(summed.data > 0)) - part.nnz


def _info(
    events: int,
    dropped: int,
    vanished: int,
    first: int,
    last: int,
    applied: Weighting,
    as_of: datetime | None,
) -> dict[str, Any]:
    """What :meth:`Interactions.from_events` records in ``info``."""
    return {
        "format_version": FORMAT_VERSION,
        "events": events,
        "dropped": dropped,
        "vanished": vanished,
        "first": iso_from_us(first),
        "last": iso_from_us(last),
        "as_of": iso(as_of),
        **applied.describe(),
    }
