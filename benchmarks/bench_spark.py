"""Spark benchmark: recforge.spark against ``pyspark.ml.recommendation.ALS``, side by side.

    PYTHONPATH=src python benchmarks/bench_spark.py [--parts train,topk,quality,small]
        [--repeats 2] [--out benchmarks/results/spark.json] [--master local[2] | --cluster 2]

One session (driver memory 4g, ``--driver-memory``) on ``--master`` (default ``local[2]``; ``--cluster N``: a
standalone cluster of N one-core workers started for the run, ``tests/spark_cluster.py``, 1g
executors), both libraries in it, alternating, best of ``--repeats``. Settings as in issue 9:
rank 64, regularisation 0.01 scaled by each row's count (Spark's ``regParam``; recforge
``regularization_scaling="count"``), alpha 1, implicit feedback, 2 user and 2 item blocks;
recforge solves by 3-step CG (its default), MLlib by Cholesky (its only solver).

* ``train``: a 2,000,000-pair synthetic set of 200,000 users x 50,000 items
  (:func:`bench_als.synthetic` with ``nnz=2_000_000``: Zipf item popularity, lognormal user
  activity). Per-iteration seconds = (10-iteration fit - 2-iteration fit) / 8, so start-up
  and block building cancel out.
* ``topk``: top-10 for every user on the *same* factors (MLlib's fitted model, its factors
  copied into a ``recforge.ALS``), both written to Parquet: ``recommendForAllUsers(10)``
  against :func:`recforge.spark.topk.recommend_all_users` (which also filters each user's
  seen items, which MLlib does not). Checked: without the filter, recforge's lists equal
  MLlib's for a sample of users.
* ``quality``: NDCG@10 on ml-1m-pairs (per-user 80/20 split, as ``bench_als``), SparkALS
  against local ``recforge.ALS`` with the same parameters (15 iterations).
* ``small``: ml-1m-pairs per-iteration and top-10 times of both (fixed per-job costs dominate).

Peak memory: the largest resident set of this process and its children (the JVM and the
Python workers) seen while running, sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np
import psutil
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_als  # noqa: E402

import recforge  # noqa: E402
from recforge.data.vocabulary import Vocabulary  # noqa: E402

RANK = 64
REGULARIZATION = 0.01
ALPHA = 1.0
BLOCKS = 2


class PeakMemory:
    """The largest summed RSS of this process tree, sampled in a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            total = 0
            for process in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak = max(self.peak, total)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**30


def frame_of(spark: Any, matrix: sp.csr_matrix) -> Any:
    """A cached DataFrame ``(user int, item int, value float)`` of a CSR matrix."""
    import pyarrow as pa

    coo = matrix.tocoo()
    table = pa.table(
        {
            "user": coo.row.astype(np.int32),
            "item": coo.col.astype(np.int32),
            "value": coo.data.astype(np.float32),
        }
    )
    frame = spark.createDataFrame(table).repartition(4).cache()
    frame.count()
    return frame


def fit_mllib(frame: Any, iterations: int) -> tuple[Any, float]:
    from pyspark.ml.recommendation import ALS as MLlibALS

    als = MLlibALS(
        rank=RANK,
        maxIter=iterations,
        regParam=REGULARIZATION,
        alpha=ALPHA,
        implicitPrefs=True,
        numUserBlocks=BLOCKS,
        numItemBlocks=BLOCKS,
        userCol="user",
        itemCol="item",
        ratingCol="value",
        seed=0,
    )
    started = time.perf_counter()
    model = als.fit(frame)
    model.userFactors.count()  # the fit is lazy in its last step: make sure it is done
    return model, time.perf_counter() - started


def fit_recforge(frame: Any, iterations: int, **extra: Any) -> tuple[recforge.ALS, float]:
    from recforge.spark import SparkALS

    params: dict[str, Any] = {
        "factors": RANK,
        "regularization": REGULARIZATION,
        "alpha": ALPHA,
        "implicit": True,
        "regularization_scaling": "count",
        "iterations": iterations,
        "random_state": 0,
        "num_user_blocks": BLOCKS,
        "num_item_blocks": BLOCKS,
    }
    params.update(extra)
    started = time.perf_counter()
    model = SparkALS(**params).fit(frame)
    return model, time.perf_counter() - started


def per_iteration(frame: Any, repeats: int, short: int = 2, long: int = 10) -> dict[str, Any]:
    """Best-of-``repeats`` fit seconds at ``short`` and ``long`` iterations, alternating."""
    times: dict[str, dict[int, list[float]]] = {
        "mllib": {short: [], long: []},
        "recforge": {short: [], long: []},
    }
    models: dict[str, Any] = {}
    for _ in range(repeats):
        for iterations in (short, long):
            models["mllib"], seconds = fit_mllib(frame, iterations)
            times["mllib"][iterations].append(seconds)
            print(f"  mllib {iterations} iterations: {seconds:.1f} s", flush=True)
            models["recforge"], seconds = fit_recforge(frame, iterations)
            times["recforge"][iterations].append(seconds)
            print(f"  recforge {iterations} iterations: {seconds:.1f} s", flush=True)
    out: dict[str, Any] = {"fits": times}
    for name in ("mllib", "recforge"):
        out[f"{name}_per_iteration_s"] = (min(times[name][long]) - min(times[name][short])) / (long - short)
    out["speedup"] = out["mllib_per_iteration_s"] / out["recforge_per_iteration_s"]
    out["models"] = models
    return out


def factors_of(model: Any, n: int, column: str = "id") -> np.ndarray:
    table = model.select(column, "features").toPandas()
    out = np.zeros((n, RANK), dtype=np.float32)
    out[table[column].to_numpy()] = np.stack(table["features"].to_numpy())
    return out


def as_recforge(mllib_model: Any, matrix: sp.csr_matrix) -> recforge.ALS:
    """A fitted ``recforge.ALS`` holding MLlib's factors (ids: the integer indices as strings)."""
    model = recforge.ALS(factors=RANK)
    n_users, n_items = matrix.shape
    model.users_, model.items_ = Vocabulary.range(n_users), Vocabulary.range(n_items)
    model.seen_ = matrix
    model.user_factors_ = factors_of(mllib_model.userFactors, n_users)
    model.item_factors_ = factors_of(mllib_model.itemFactors, n_items)
    return model


def top_k(spark: Any, mllib_model: Any, matrix: sp.csr_matrix, repeats: int, scratch: Path) -> dict[str, Any]:
    from recforge.spark.topk import recommend_all_users

    model = as_recforge(mllib_model, matrix)
    times: dict[str, list[float]] = {"mllib": [], "recforge": []}
    for repeat in range(repeats):
        started = time.perf_counter()
        mllib_model.recommendForAllUsers(10).write.mode("overwrite").parquet(str(scratch / "mllib"))
        times["mllib"].append(time.perf_counter() - started)
        started = time.perf_counter()
        recommend_all_users(spark, model, 10, path=scratch / "recforge")
        times["recforge"].append(time.perf_counter() - started)
        mllib, ours = times["mllib"][-1], times["recforge"][-1]
        print(f"  top-10 repeat {repeat}: mllib {mllib:.1f} s, recforge {ours:.1f} s", flush=True)
    # cross-check on a sample of users: recforge without the seen filter = MLlib's lists
    lists = spark.read.parquet(str(scratch / "mllib")).toPandas()
    sample = lists.sample(n=min(1000, len(lists)), random_state=0)
    users = sample["user"].to_numpy().astype(np.int64)
    ids, _ = model.recommend(users, k=10, filter_seen=False)
    agree = np.mean(
        [
            set(int(r["item"]) for r in row) == set(ids[i].tolist())
            for i, row in enumerate(sample["recommendations"])
        ]
    )
    best = {name: min(values) for name, values in times.items()}
    return {
        "seconds": times,
        "mllib_s": best["mllib"],
        "recforge_s": best["recforge"],
        "speedup": best["mllib"] / best["recforge"],
        "same_lists_without_seen_filter": float(agree),
    }


def quality(spark: Any) -> dict[str, Any]:
    train, test = bench_als.per_user_split(bench_als.ml1m())
    params = {
        "factors": RANK,
        "regularization": REGULARIZATION,
        "alpha": ALPHA,
        "iterations": 15,
        "random_state": 0,
    }
    local = recforge.ALS(**params).fit(train)
    frame = frame_of(spark, train)
    # the DataFrame's ids are integer indices: map them back the way the vocabulary sorts them
    distributed, _ = fit_recforge(frame, 15, regularization_scaling="none")
    users = distributed.users_.lookup(np.arange(train.shape[0]).astype(str))
    items = distributed.items_.lookup(np.arange(train.shape[1]).astype(str))
    X = np.zeros((train.shape[0], RANK), np.float32)
    Y = np.zeros((train.shape[1], RANK), np.float32)
    X[users >= 0] = distributed.user_factors_[users[users >= 0]]
    Y[items >= 0] = distributed.item_factors_[items[items >= 0]]
    ndcg_local = bench_als.ndcg_at_10(local.user_factors_, local.item_factors_, train, test)
    ndcg_spark = bench_als.ndcg_at_10(X, Y, train, test)
    frame.unpersist()
    return {
        "ndcg10_local": ndcg_local,
        "ndcg10_spark": ndcg_spark,
        "relative_difference": abs(ndcg_spark - ndcg_local) / ndcg_local,
        "params": {**params, "regularization_scaling": "none"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="train,topk,quality,small")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--long-iterations",
        type=int,
        default=10,
        help="ALS per iteration is (this fit - a 2-iteration fit) / (this - 2): more cuts the set-up's noise",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "spark.json")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--cluster", type=int, default=0, help="start a standalone cluster of N workers")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with contextlib.ExitStack() as stack:
        if args.cluster:
            sys.path.insert(0, str(REPO))
            from tests.spark_cluster import standalone_cluster

            root = Path(tempfile.mkdtemp(prefix="bench-spark-cluster-"))
            stack.callback(shutil.rmtree, root, ignore_errors=True)
            args.master = stack.enter_context(standalone_cluster(root, workers=args.cluster)).url
        run(args, parts)


def run(args: argparse.Namespace, parts: set[str]) -> None:
    from recforge.spark import spark_session

    memory = PeakMemory()
    spark = spark_session(
        args.master,
        app_name="bench-spark",
        driver_memory=args.driver_memory,
        executor_memory="1g",
        config={"spark.scheduler.minRegisteredResourcesRatio": "1.0"},
    )
    spark.sparkContext.setLogLevel("ERROR")
    scratch = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    spark.sparkContext.setCheckpointDir(str(scratch / "checkpoints"))
    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB",
        "spark": spark.version,
        "master": args.master,
        "settings": {"rank": RANK, "regularization": REGULARIZATION, "alpha": ALPHA, "blocks": BLOCKS},
    }
    try:
        # warm up: JVM, Python workers, numba's cached kernels
        fit_recforge(
            frame_of(spark, sp.random(300, 200, density=0.05, format="csr", random_state=0)), 1, factors=8
        )
        datasets = {}
        if parts & {"train", "topk"}:
            datasets["syn2m"] = bench_als.synthetic(200_000, 50_000, 2_000_000, seed=0)
        if "small" in parts:
            datasets["ml-1m-pairs"] = bench_als.ml1m()
        for name, matrix in datasets.items():
            if name == "syn2m" and "train" not in parts:
                continue
            print(
                f"{name}: {matrix.shape[0]:,} users x {matrix.shape[1]:,} items, {matrix.nnz:,} pairs",
                flush=True,
            )
            frame = frame_of(spark, matrix)
            timing = per_iteration(frame, args.repeats, long=args.long_iterations)
            models = timing.pop("models")
            results[name] = {
                "users": matrix.shape[0],
                "items": matrix.shape[1],
                "pairs": matrix.nnz,
                "train": timing,
            }
            print(
                f"  per iteration: {json.dumps({k: v for k, v in timing.items() if k != 'fits'})}", flush=True
            )
            if "topk" in parts or name == "ml-1m-pairs":
                results[name]["topk"] = top_k(spark, models["mllib"], matrix, args.repeats, scratch)
                print(f"  top-10: {json.dumps(results[name]['topk'])}", flush=True)
            frame.unpersist()
            del models
        if "quality" in parts:
            results["quality"] = quality(spark)
            print(f"quality: {json.dumps(results['quality'])}", flush=True)
    finally:
        spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        results["peak_memory_gib"] = memory.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float))
    print(f"peak memory {results['peak_memory_gib']:.1f} GiB; wrote {args.out}")


if __name__ == "__main__":
    main()
