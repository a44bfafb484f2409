"""ALS engine benchmark: recforge.ALS against ``implicit`` 0.7 (and ``pyspark.ml`` for explicit).

    PYTHONPATH=src python benchmarks/bench_als.py [--parts speed,quality,rmse,startup]
        [--datasets syn2m,syn2m-pairs,syn20m] [--iterations 15] [--threads 2] [--repeats 2]

Settings as in issue 4: 64 factors, 15 iterations, regularisation 0.01, alpha 1, 2 threads,
BLAS pinned to 1 thread; ``implicit`` is fed ``1 + alpha * r`` (it uses the stored value as the
confidence ``c``), recforge the ``r`` values (``c = 1 + alpha * r`` inside), so both minimise the
same objective: both losses are computed with :func:`recforge.kernels.als.als_loss` on the
factors each produced. The two libraries run side by side in one process, alternating, best of
``--repeats``; per-iteration seconds are the median over a fit's iterations.

Data: (a) synthetic, written by :func:`synthetic` below: 200,000 users x 50,000 items x
20,000,000 distinct pairs, Zipf(1) item popularity, lognormal(0, 1) user activity, ``r`` = the
number of draws of the pair (1+); ``syn2m`` keeps 10% of the users (about 2M pairs, same
activity distribution), ``syn2m-pairs`` 2M pairs drawn uniformly (about 10 per user);
(b) ``../shared/datasets/ml-1m-pairs`` and ``ml-100k`` for NDCG@10 on a per-user 80/20 split.

GFLOP/s: each library's own algorithm's flops (:func:`recforge_flops`, :func:`implicit_flops`)
per second; recforge does fewer flops (diagonal Gram, Woodbury), so compare seconds first.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
sys.path.insert(0, str(REPO / "src"))

import recforge  # noqa: E402
from recforge.kernels import als as kernels  # noqa: E402

FACTORS = 64
REGULARIZATION = 0.01
ALPHA = 1.0


# data ----------------------------------------------------------------------------------------
def synthetic(
    n_users: int = 200_000, n_items: int = 50_000, nnz: int = 20_000_000, seed: int = 0
) -> sp.csr_matrix:
    """Distinct (user, item) pairs with Zipf(1) item popularity and lognormal(0, 1) user
    activity; ``r`` counts how often the pair was drawn (1+). Vectorised, seeded."""
    rng = np.random.default_rng(seed)
    item_cdf = np.cumsum(1.0 / np.arange(1, n_items + 1))
    item_cdf /= item_cdf[-1]
    item_of_rank = rng.permutation(n_items).astype(np.int64)
    user_cdf = np.cumsum(rng.lognormal(0.0, 1.0, n_users))
    user_cdf /= user_cdf[-1]
    keys = np.empty(0, np.int64)
    counts = np.empty(0, np.int64)
    draws = int(nnz * 1.45)
    while len(keys) < nnz:
        users = np.searchsorted(user_cdf, rng.random(draws)).astype(np.int64)
        items = item_of_rank[np.searchsorted(item_cdf, rng.random(draws))]
        new_keys = np.concatenate([keys, users * n_items + items])
        new_counts = np.concatenate([counts, np.ones(draws, np.int64)])
        keys, inverse = np.unique(new_keys, return_inverse=True)
        counts = np.bincount(inverse, weights=new_counts).astype(np.int64)
        draws = int((nnz - len(keys)) * 1.5) + 1000
    keep = np.sort(rng.choice(len(keys), nnz, replace=False))
    keys, counts = keys[keep], counts[keep]
    rows, cols = keys // n_items, (keys % n_items).astype(np.int32)
    indptr = np.zeros(n_users + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    return sp.csr_matrix((counts.astype(np.float32), cols, indptr), shape=(n_users, n_items))


def synthetic_sets(cache: Path) -> dict[str, sp.csr_matrix]:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "syn20m.npz"
    if path.exists():
        full = sp.load_npz(path).tocsr()
    else:
        full = synthetic()
        sp.save_npz(path, full, compressed=False)
    rng = np.random.default_rng(1)
    users = np.sort(rng.choice(full.shape[0], full.shape[0] // 10, replace=False))
    keep = np.sort(rng.choice(full.nnz, 2_000_000, replace=False))
    rows = np.repeat(np.arange(full.shape[0], dtype=np.int32), np.diff(full.indptr))[keep]
    pairs = sp.csr_matrix((full.data[keep], (rows, full.indices[keep])), shape=full.shape)
    return {"syn2m": full[users].tocsr(), "syn2m-pairs": pairs, "syn20m": full}


def per_user_split(
    matrix: sp.csr_matrix, seed: int = 0, test_fraction: float = 0.2
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Per-user random split of the stored entries (each user keeps at least one in train)."""
    coo = matrix.tocoo()
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(coo.nnz), coo.row))
    rows = coo.row[order]
    starts = np.searchsorted(rows, rows, side="left")
    counts = np.bincount(rows, minlength=matrix.shape[0])[rows]
    position = np.arange(coo.nnz) - starts
    test = position < np.floor(counts * test_fraction)
    test &= counts > 1
    pick = order[test], order[~test]
    out = []
    for idx in pick:
        out.append(sp.csr_matrix((coo.data[idx], (coo.row[idx], coo.col[idx])), shape=matrix.shape))
    test_m, train_m = out
    return train_m, test_m


def ml1m() -> sp.csr_matrix:
    import pyarrow.parquet as pq

    with gzip.open(DATASETS / "ml-1m-pairs" / "ratings.parquet.gz", "rb") as fh:
        table = pq.read_table(io.BytesIO(fh.read()))
    users = np.asarray(table.column("userID").to_numpy(zero_copy_only=False)).astype(np.int64)
    items = np.asarray(table.column("movieID").to_numpy(zero_copy_only=False)).astype(np.int64)
    _, u = np.unique(users, return_inverse=True)
    _, i = np.unique(items, return_inverse=True)
    return sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=(u.max() + 1, i.max() + 1))


def ml100k(name: str) -> np.ndarray:
    """``(user, item, rating)`` rows (0-based ids) of an ml-100k file, e.g. ``u.data``."""
    with gzip.open(DATASETS / "ml-100k" / f"{name}.gz", "rt") as fh:
        table = np.loadtxt(fh, dtype=np.int64)
    return np.column_stack([table[:, 0] - 1, table[:, 1] - 1, table[:, 2]])


# measuring -----------------------------------------------------------------------------------
class PeakRSS:
    """Samples this process's resident set every 5 ms in a thread; ``peak`` in bytes."""

    def __enter__(self) -> PeakRSS:
        self.baseline = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def csr_bytes(m: sp.csr_matrix) -> int:
    return int(m.indptr.nbytes + m.indices.nbytes + m.data.nbytes)


def recforge_flops(m: sp.csr_matrix, solver: str) -> float:
    """Flops of one recforge iteration: per half, the rows' solves
    (:func:`recforge.kernels.als.row_flops`), the Gram ``2 n_other f^2`` and the rotation of
    the other side (and, for CG, of the solved side) into its eigenbasis, ``2 n f^2`` each."""
    total = 0.0
    for rows in (m, m.T.tocsr()):
        n_rows, n_other = rows.shape
        kind = "cg" if solver == "cg" else "exact"
        rotated = n_other + (n_rows if solver == "cg" else 0)
        total += kernels.row_flops(rows.indptr, FACTORS, kind) + 2.0 * FACTORS**2 * (n_other + rotated)
    return total


def implicit_flops(m: sp.csr_matrix, solver: str, cg_steps: int = 3) -> float:
    """Flops of one ``implicit`` iteration, its algorithm (``cpu/_als.pyx``): per half the Gram
    ``2 n_other f^2``; per row with ``n`` entries, CG: ``(s + 1) (2 f^2 + 4 n f) + 10 s f``
    (an ``f x f`` symv per step); Cholesky: ``n (2 f^2 + 2 f) + f^3 / 3 + 2 f^2`` (a full
    rank-1 update per entry, then ``posv``)."""
    f = float(FACTORS)
    total = 0.0
    for rows in (m, m.T.tocsr()):
        n = np.diff(rows.indptr).astype(np.float64)
        n = n[n > 0]
        if solver == "cg":
            per_row = (cg_steps + 1) * (2 * f * f + 4 * n * f) + 10 * cg_steps * f
        else:
            per_row = n * (2 * f * f + 2 * f) + f**3 / 3 + 2 * f * f
        total += float(per_row.sum()) + 2 * f * f * rows.shape[1]
    return total


def fit_recforge(
    train: sp.csr_matrix, solver: str, iterations: int, threads: int, seed: int = 0
) -> dict[str, Any]:
    model = recforge.ALS(
        factors=FACTORS, regularization=REGULARIZATION, alpha=ALPHA, iterations=iterations,
        solver=solver, random_state=seed, num_threads=threads,
    )  # fmt: skip
    stamps: list[float] = []
    with PeakRSS() as rss:
        start = time.perf_counter()
        model.fit(train, callback=lambda p: stamps.append(p.elapsed))
        total = time.perf_counter() - start
    per_iteration = np.diff([0.0, *stamps])
    return {
        "model": model,
        "X": model.user_factors_,
        "Y": model.item_factors_,
        "seconds": total,
        "per_iteration": float(np.median(per_iteration[1:] if len(per_iteration) > 1 else per_iteration)),
        "rss_increase": rss.peak - rss.baseline,
    }


def fit_implicit(
    train: sp.csr_matrix, solver: str, iterations: int, threads: int, seed: int = 0
) -> dict[str, Any]:
    from implicit.cpu.als import AlternatingLeastSquares

    confidence = train.copy()
    confidence.data = (1 + ALPHA * confidence.data).astype(np.float32)
    times: list[float] = []
    with PeakRSS() as rss, threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=FACTORS, regularization=REGULARIZATION, alpha=1.0, iterations=iterations,
            use_cg=solver == "cg", num_threads=threads, random_state=seed, calculate_training_loss=False,
        )  # fmt: skip
        start = time.perf_counter()
        model.fit(confidence, show_progress=False, callback=lambda it, elapsed, loss: times.append(elapsed))
        total = time.perf_counter() - start
    return {
        "X": model.user_factors,
        "Y": model.item_factors,
        "seconds": total,
        "per_iteration": float(np.median(times[1:] if len(times) > 1 else times)),
        "rss_increase": rss.peak - rss.baseline,
    }


def loss_of(train: sp.csr_matrix, X: np.ndarray, Y: np.ndarray) -> float:
    return kernels.als_loss(train.indptr, train.indices, train.data, X, Y, REGULARIZATION, False, ALPHA, True)


def ndcg_at_10(
    X: np.ndarray, Y: np.ndarray, train: sp.csr_matrix, test: sp.csr_matrix, min_relevance: float = 0.0
) -> float:
    """Mean NDCG@10 (binary relevance: test entries with ``r > min_relevance``) over users with
    a relevant test item; training items are never recommended."""
    relevant = test.copy()
    relevant.data = (relevant.data > min_relevance).astype(np.float32)
    relevant.eliminate_zeros()
    users = np.flatnonzero(np.diff(relevant.indptr))
    discounts = 1.0 / np.log2(np.arange(2, 12))
    total = 0.0
    for start in range(0, len(users), 1024):
        block = users[start : start + 1024]
        scores = X[block] @ Y.T
        seen = train[block]
        scores[np.repeat(np.arange(len(block)), np.diff(seen.indptr)), seen.indices] = -np.inf
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        rel = relevant[block]
        for row, items in enumerate(top):
            hits = np.isin(items, rel.indices[rel.indptr[row] : rel.indptr[row + 1]])
            ideal = discounts[: min(10, rel.indptr[row + 1] - rel.indptr[row])].sum()
            total += float(discounts[hits].sum() / ideal)
    return total / len(users)


# parts ---------------------------------------------------------------------------------------
def warm_up(threads: int) -> None:
    """Compile / load both libraries' code before anything is measured."""
    tiny = sp.random(300, 200, density=0.05, format="csr", random_state=0, dtype=np.float32)
    for solver in ("cg", "cholesky"):
        fit_recforge(tiny, solver, 2, threads)
        fit_implicit(tiny, solver, 2, threads)


def part_speed(args: argparse.Namespace, results: dict[str, Any]) -> None:
    sets = synthetic_sets(Path(args.cache))
    warm_up(args.threads)
    for name in args.datasets.split(","):
        train = sets[name]
        for solver in ("cg", "cholesky"):
            iterations = (
                args.iterations if (solver == "cg" or name != "syn20m") else args.cholesky_20m_iterations
            )
            flops = {"recforge": recforge_flops(train, solver), "implicit": implicit_flops(train, solver)}
            row: dict[str, Any] = {
                "dataset": name,
                "solver": solver,
                "iterations": iterations,
                "nnz": train.nnz,
            }
            best: dict[str, dict[str, Any]] = {}
            for _ in range(args.repeats):
                for library, fit in (("recforge", fit_recforge), ("implicit", fit_implicit)):
                    out = fit(train, solver, iterations, args.threads)
                    previous = best.get(library)
                    if previous is None or out["per_iteration"] < previous["per_iteration"]:
                        best[library] = out
                    print(f"{name} {solver} {library}: {out['per_iteration']:.3f} s/it", flush=True)
            for library, out in best.items():
                row[library] = {
                    "s_per_iteration": out["per_iteration"],
                    "gflops": flops[library] / out["per_iteration"] / 1e9,
                    "loss": loss_of(train, out["X"], out["Y"]),
                    "rss_increase_mb": out["rss_increase"] / 2**20,
                }
            input_mb = csr_bytes(train) / 2**20
            factor_mb = (train.shape[0] + train.shape[1]) * FACTORS * 4 / 2**20
            row["input_csr_mb"], row["factors_mb"] = input_mb, factor_mb
            row["ratio"] = row["recforge"]["s_per_iteration"] / row["implicit"]["s_per_iteration"]
            row["loss_ratio"] = row["recforge"]["loss"] / row["implicit"]["loss"]
            row["memory_ratio"] = row["recforge"]["rss_increase_mb"] / (input_mb + factor_mb)
            print(json.dumps(row, indent=1), flush=True)
            results.setdefault("speed", []).append(row)
            del best


def part_quality(args: argparse.Namespace, results: dict[str, Any]) -> None:
    data = {"ml-1m-pairs": (ml1m(), 0.0)}
    rows = ml100k("u.data")
    full = sp.csr_matrix((rows[:, 2].astype(np.float32), (rows[:, 0], rows[:, 1])), shape=(943, 1682))
    data["ml-100k"] = (full, 3.5)  # test positives: ratings >= 4
    for name, (matrix, min_relevance) in data.items():
        train, test = per_user_split(matrix, seed=0)
        for solver in ("cg", "cholesky"):
            row: dict[str, Any] = {"dataset": name, "solver": solver}
            for library, fit in (("recforge", fit_recforge), ("implicit", fit_implicit)):
                out = fit(train, solver, args.iterations, args.threads)
                row[library] = {
                    "ndcg@10": ndcg_at_10(out["X"], out["Y"], train, test, min_relevance),
                    "loss": loss_of(train, out["X"], out["Y"]),
                    "s_per_iteration": out["per_iteration"],
                }
            row["ndcg_relative_difference"] = row["recforge"]["ndcg@10"] / row["implicit"]["ndcg@10"] - 1
            print(json.dumps(row, indent=1), flush=True)
            results.setdefault("quality", []).append(row)


def part_rmse(args: argparse.Namespace, results: dict[str, Any]) -> None:
    base, test = ml100k("u1.base"), ml100k("u1.test")
    rank, reg, iterations = 10, 0.1, args.iterations
    train = sp.csr_matrix((base[:, 2].astype(np.float32), (base[:, 0], base[:, 1])), shape=(943, 1682))
    known = np.isin(test[:, 0], base[:, 0]) & np.isin(test[:, 1], base[:, 1])
    test = test[known]
    row: dict[str, Any] = {
        "rank": rank,
        "regularization": reg,
        "iterations": iterations,
        "test_pairs": len(test),
    }
    for solver in ("cholesky", "cg"):
        model = recforge.ALS(
            factors=rank, regularization=reg, iterations=iterations, implicit=False, solver=solver,
            regularization_scaling="count", random_state=0, num_threads=args.threads,
        ).fit(train)  # fmt: skip
        predicted = np.einsum("ij,ij->i", model.user_factors_[test[:, 0]], model.item_factors_[test[:, 1]])
        row[f"recforge_{solver}_rmse"] = float(np.sqrt(np.mean((predicted - test[:, 2]) ** 2)))
    from pyspark.ml.recommendation import ALS as SparkALS
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(f"local[{args.threads}]").appName("bench_als")
        .config("spark.driver.memory", "2g").config("spark.ui.enabled", "false").getOrCreate()
    )  # fmt: skip
    try:
        frame = spark.createDataFrame([tuple(map(int, r)) for r in base], ["user", "item", "rating"])
        test_frame = spark.createDataFrame([tuple(map(int, r)) for r in test], ["user", "item", "rating"])
        start = time.perf_counter()
        spark_model = SparkALS(
            rank=rank, regParam=reg, maxIter=iterations, userCol="user", itemCol="item",
            ratingCol="rating", coldStartStrategy="drop", seed=0,
        ).fit(frame)  # fmt: skip
        row["spark_seconds"] = time.perf_counter() - start
        predictions = np.array(spark_model.transform(test_frame).select("rating", "prediction").collect())
        row["spark_rmse"] = float(np.sqrt(np.mean((predictions[:, 1] - predictions[:, 0]) ** 2)))
        row["spark_pairs"] = len(predictions)
    finally:
        spark.stop()
    row["relative_difference"] = row["recforge_cholesky_rmse"] / row["spark_rmse"] - 1
    print(json.dumps(row, indent=1), flush=True)
    results["rmse"] = row


MEMORY = """
import sys, json
sys.path.insert(0, {bench!r})
import numpy as np, scipy.sparse as sp
import bench_als as b
import recforge
train = sp.load_npz({path!r}).tocsr()
if {library!r} == "recforge-interactions":
    train = recforge.Interactions.from_csr(train)  # vocabularies built before measuring
tiny = sp.random(300, 200, density=0.05, format="csr", random_state=0, dtype=np.float32)
fit = b.fit_implicit if {library!r} == "implicit" else b.fit_recforge
fit(tiny, {solver!r}, 1, {threads})  # load code first
out = fit(train, {solver!r}, 2, {threads})
print(json.dumps({{"rss_increase": out["rss_increase"]}}))
"""


def part_memory(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Peak RSS increase during a fit (2 iterations: the peak comes in the first), each fit in
    its own process with only its matrix loaded, so no freed memory from earlier work hides it.
    ``recforge`` is given the CSR (``fit`` then builds an ``Interactions`` with default string
    vocabularies), ``recforge-interactions`` an ``Interactions`` built beforehand."""
    sets = synthetic_sets(Path(args.cache))
    for name in args.datasets.split(","):
        path = Path(args.cache) / f"{name}.npz"
        if not path.exists():
            sp.save_npz(path, sets[name], compressed=False)
        train = sets[name]
        input_mb = csr_bytes(train) / 2**20
        factor_mb = (train.shape[0] + train.shape[1]) * FACTORS * 4 / 2**20
        for solver in ("cg", "cholesky"):
            row: dict[str, Any] = {
                "dataset": name,
                "solver": solver,
                "input_csr_mb": input_mb,
                "factors_mb": factor_mb,
            }
            for library in ("recforge", "recforge-interactions", "implicit"):
                code = MEMORY.format(
                    bench=str(Path(__file__).parent), path=str(path), library=library, solver=solver,
                    threads=args.threads,
                )  # fmt: skip
                env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
                out = subprocess.run(
                    [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
                )
                increase = json.loads(out.stdout.strip().splitlines()[-1])["rss_increase"] / 2**20
                row[library] = {"rss_increase_mb": increase, "ratio": increase / (input_mb + factor_mb)}
            print(json.dumps(row), flush=True)
            results.setdefault("memory", []).append(row)


STARTUP = """
import time
start = time.perf_counter()
import numpy as np, scipy.sparse as sp
import recforge
imported = time.perf_counter()
X = sp.random(2000, 500, density=0.02, format="csr", random_state=0, dtype=np.float32)
times = {}
for solver in ("cg", "cholesky"):
    t = time.perf_counter()
    recforge.ALS(factors=64, iterations=1, solver=solver, random_state=0).fit(X)
    times[solver] = time.perf_counter() - t
print(imported - start, times["cg"], times["cholesky"])
"""


def part_startup(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """First call (empty numba cache: compiles) and a second process (cache hit)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache
        row = {}
        for label in ("first_process", "second_process"):
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", STARTUP], env=env, capture_output=True, text=True, check=True
            )
            wall = time.perf_counter() - start
            imported, cg, cholesky = map(float, out.stdout.split())
            row[label] = {
                "wall": wall,
                "import": imported,
                "first_fit_cg": cg,
                "first_fit_cholesky": cholesky,
            }
        print(json.dumps(row, indent=1), flush=True)
        results["startup"] = row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="startup,rmse,quality,memory,speed")
    parser.add_argument("--datasets", default="syn2m,syn2m-pairs,syn20m")
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--cholesky-20m-iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cache", default=str(REPO / "benchmarks" / "data"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "als.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {"args": vars(args)}
    parts = {
        "speed": part_speed,
        "memory": part_memory,
        "quality": part_quality,
        "rmse": part_rmse,
        "startup": part_startup,
    }
    for part in args.parts.split(","):
        parts[part](args, results)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
