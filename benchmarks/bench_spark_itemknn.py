"""Spark ItemKNN against the marketplace's SQL self-join, side by side (issue 19).

    PYTHONPATH=src python benchmarks/bench_spark_itemknn.py [--master local[2]] [--repeats 2]
        [--nnz 2000000] [--out benchmarks/results/spark_itemknn.json]

Data: the synthetic 200,000 users x 50,000 items set of ``bench_spark`` (:func:`bench_als.synthetic`,
``nnz`` distinct pairs, ``r`` = a count), one cached DataFrame ``(user, item, value)``.

* **recforge**: ``SparkItemKNN(neighbors=9).fit(frame)``: weights ``1 + ln r``, each user's
  row scaled to unit length, cosine between items, the 9 best per item, as a blocked sparse
  product (one block per core each side).
* **SQL**: the marketplace's formulation run by Spark SQL on the same frame: weight each
  (user, item) by ``ln(count) + 1``, divide by the user's L2 norm, self-join on user with a
  different item, sum the products per item pair, divide by the two items' norms (the cosine
  recforge computes; the marketplace's ranking without it is the same per item up to that
  item's own norm, only the other item's norm changes the order) and keep the top 9 per item by
  ``row_number()`` over (score desc, then the id as recforge orders ids: as strings). Written
  to Parquet (a noop sink would let Spark skip work).

Both alternate, best of ``--repeats``; the lists are compared item by item (the same 9 items in
the same order, and the same set).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_als  # noqa: E402
from bench_spark import PeakMemory, frame_of  # noqa: E402

NEIGHBORS = 9


def fit_recforge(frame: Any) -> tuple[dict[int, list[int]], float]:
    from recforge.spark import SparkItemKNN

    started = time.perf_counter()
    model = SparkItemKNN(neighbors=NEIGHBORS).fit(frame)
    seconds = time.perf_counter() - started
    ids = np.asarray(model.items_.array.to_pylist(), dtype=np.int64)
    sim = model.similarity_.tocsr()
    lists = {}
    for i in range(sim.shape[0]):
        row = slice(sim.indptr[i], sim.indptr[i + 1])
        if row.start == row.stop:
            continue
        order = np.lexsort((sim.indices[row], -sim.data[row]))  # best first, ties: lower index
        lists[int(ids[i])] = [int(ids[j]) for j in sim.indices[row][order]]
    return lists, seconds


def fit_sql(spark: Any, frame: Any, out: Path) -> tuple[dict[int, list[int]], float]:
    frame.createOrReplaceTempView("pairs")
    query = f"""
    WITH w AS (
      SELECT user, item, ln(value) + 1 AS w FROM pairs
    ), n AS (
      SELECT w.user, w.item, w.w / sqrt(sum(w.w * w.w) OVER (PARTITION BY w.user)) AS w FROM w
    ), norms AS (
      SELECT item, sqrt(sum(w * w)) AS norm FROM n GROUP BY item
    ), products AS (
      SELECT a.item AS item, b.item AS other, sum(a.w * b.w) AS dot
      FROM n a JOIN n b ON a.user = b.user AND a.item != b.item
      GROUP BY a.item, b.item
    ), cosine AS (
      SELECT p.item, p.other, p.dot / (x.norm * y.norm) AS score
      FROM products p JOIN norms x ON p.item = x.item JOIN norms y ON p.other = y.item
    ), ranked AS (
      SELECT item, other, score,
             row_number() OVER (PARTITION BY item ORDER BY score DESC, CAST(other AS STRING) ASC) AS rank
      FROM cosine
    )
    SELECT item, other, rank FROM ranked WHERE rank <= {NEIGHBORS}
    """
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    spark.sql(query).write.parquet(str(out))
    seconds = time.perf_counter() - started
    table = spark.read.parquet(str(out)).toPandas().sort_values(["item", "rank"])
    lists: dict[int, list[int]] = {}
    for item, other in zip(table["item"].to_numpy(), table["other"].to_numpy(), strict=True):
        lists.setdefault(int(item), []).append(int(other))
    return lists, seconds


def compare(ours: dict[int, list[int]], theirs: dict[int, list[int]]) -> dict[str, Any]:
    items = sorted(set(ours) | set(theirs))
    same_order = sum(ours.get(i) == theirs.get(i) for i in items)
    same_set = sum(set(ours.get(i, [])) == set(theirs.get(i, [])) for i in items)
    return {
        "items_with_lists": len(items),
        "same_lists_in_order": same_order / len(items),
        "same_sets": same_set / len(items),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--nnz", type=int, default=2_000_000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "spark_itemknn.json")
    args = parser.parse_args()

    from recforge.spark import spark_session

    memory = PeakMemory()
    spark = spark_session(
        args.master, app_name="bench-spark-itemknn", driver_memory="3g", executor_memory="1g"
    )
    scratch = Path(tempfile.mkdtemp(prefix="bench-spark-itemknn-"))
    matrix = bench_als.synthetic(200_000, 50_000, args.nnz, seed=0)
    results: dict[str, Any] = {
        "master": args.master,
        "cores": spark.sparkContext.defaultParallelism,
        "data": {"users": matrix.shape[0], "items": matrix.shape[1], "pairs": int(matrix.nnz)},
        "load_before": os.getloadavg(),
    }
    try:
        frame = frame_of(spark, matrix)
        fit_recforge(frame_of(spark, matrix[:2_000]))  # warm up: Python workers, numba's cache
        runs: dict[str, list[float]] = {"recforge": [], "sql": []}
        lists: dict[str, dict[int, list[int]]] = {}
        for repeat in range(args.repeats):
            for name in ("recforge", "sql") if repeat % 2 == 0 else ("sql", "recforge"):
                got, seconds = (
                    fit_recforge(frame) if name == "recforge" else fit_sql(spark, frame, scratch / "sql")
                )
                runs[name].append(seconds)
                lists[name] = got
                print(f"repeat {repeat}: {name} {seconds:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
        results["seconds"] = runs
        best = {name: min(seconds) for name, seconds in runs.items()}
        results["best"] = best
        results["speedup"] = best["sql"] / best["recforge"]
        results["lists"] = compare(lists["recforge"], lists["sql"])
        print(json.dumps({k: results[k] for k in ("best", "speedup", "lists")}), flush=True)
    finally:
        spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        results["load_after"] = os.getloadavg()
        results["peak_memory_gib"] = memory.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float))
    print(f"peak memory {results['peak_memory_gib']:.1f} GiB; wrote {args.out}")


if __name__ == "__main__":
    main()
