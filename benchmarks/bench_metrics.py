"""Metrics @K over many users: recforge's vectorised metrics against a plain Python loop.

Data (synthetic, seeded): ``--users`` users, ``--items`` items with Zipf-like popularity; each
user has a random number (mean ``--relevant``) of relevant items with graded values 1..5, and a
top-``k`` list in which about a third of the slots hold relevant items (the rest popular
non-relevant ones, some rows padded), so every code path is exercised.

Timed, best of ``--repeats`` with the sides alternating: ``metrics_at_k`` (all 8 metrics from one
membership pass), each single-metric function, the one-off ``Evaluator`` set-up (relevant sets
minus a random train matrix with twice as many pairs), and the plain Python per-user loop of
``tests/evaluation/test_metrics.py::reference`` on a ``--python-users`` sample, scaled to all users.
numba's threads are pinned to ``--threads`` (default 1: the number is per core), BLAS to one.
The per-row kernels of :mod:`recforge.kernels.ranking` are also timed beside their NumPy twins.

    PYTHONPATH=src:. python benchmarks/bench_metrics.py            # 200,000 users x top-10
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import scipy.sparse as sp

from recforge._numba import thread_limits
from recforge.evaluation import (
    Evaluator,
    coverage_at_k,
    hit_rate_at_k,
    map_at_k,
    metrics_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from recforge.kernels import ranking


def make_data(n_users: int, n_items: int, mean_relevant: float, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    counts = rng.poisson(mean_relevant, n_users)
    rows = np.repeat(np.arange(n_users), counts)
    cols = rng.choice(n_items, size=len(rows), p=popularity)
    relevant = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))
    relevant.sum_duplicates()
    relevant.data = rng.integers(1, 6, size=relevant.nnz).astype(np.float64)  # grades 1..5
    # lists: k distinct popular-ish items per user; each slot j holds instead, with
    # probability 0.3, the user's j-th relevant item (when it has one)
    rec = rng.choice(n_items, size=(n_users, 3 * k), p=popularity)
    n_rel = np.diff(relevant.indptr)
    for j in range(k):  # a loop over the k slots, vectorised over users
        put = (n_rel > j) & (rng.random(n_users) < 0.3)
        rec[put, j] = relevant.indices[relevant.indptr[:-1][put] + j]
    rec = _first_distinct(rec, k)
    rec[rng.random(n_users) < 0.05, k // 2 :] = -1  # some short (padded) lists
    return rec.astype(np.int32), relevant


def _first_distinct(rec: np.ndarray, k: int) -> np.ndarray:
    """Per row, the first ``k`` distinct ids in order (``-1`` when a row has fewer)."""
    order = np.argsort(rec, axis=1, kind="stable")
    ordered = np.take_along_axis(rec, order, axis=1)
    repeat = np.zeros(rec.shape, dtype=bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    first = np.ones(rec.shape, dtype=bool)
    np.put_along_axis(first, order, ~repeat, axis=1)
    keyed = np.where(first, np.arange(rec.shape[1]), rec.shape[1])  # keep first occurrences, in order
    pick = np.sort(keyed, axis=1)[:, :k]
    out = np.take_along_axis(rec, np.minimum(pick, rec.shape[1] - 1), axis=1)
    return np.where(pick < rec.shape[1], out, -1)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _alternating(fns, repeats):
    """Best time of each function, running them in turn ``repeats`` times."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for j, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[j].append(time.perf_counter() - start)
    return [min(t) for t in times]


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--relevant", type=float, default=10.0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python-users", type=int, default=5_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from tests.evaluation.test_metrics import reference

    rec, rel = make_data(args.users, args.items, args.relevant, args.k)
    k = args.k
    machine = _cpu_name()
    print(f"machine: {machine}, numpy {np.__version__}, threads {args.threads}")
    print(f"data: {args.users:,} users x {args.items:,} items, {rel.nnz:,} relevant pairs, top-{k}")
    with thread_limits(numba_threads=args.threads, blas_threads=1):
        metrics_at_k(rec, rel, k)  # warm up
        sample = slice(0, args.python_users)
        scale = args.users / args.python_users
        t_all, t_py = [], []
        for _ in range(args.repeats):  # alternate the two sides
            t_all.append(best(lambda: metrics_at_k(rec, rel, k), 1))
            t_py.append(best(lambda: reference(rec[sample], rel[sample], k), 1) * scale)
        all_s, py_s = min(t_all), min(t_py)
        singles = {
            "precision_at_k": lambda: precision_at_k(rec, rel, k),
            "recall_at_k": lambda: recall_at_k(rec, rel, k),
            "ndcg_at_k": lambda: ndcg_at_k(rec, rel, k),
            "ndcg_at_k(graded)": lambda: ndcg_at_k(rec, rel, k, graded=True),
            "map_at_k": lambda: map_at_k(rec, rel, k),
            "hit_rate_at_k": lambda: hit_rate_at_k(rec, rel, k),
            "mrr_at_k": lambda: mrr_at_k(rec, rel, k),
            "coverage_at_k": lambda: coverage_at_k(rec, args.items, k),
        }
        single_s = {name: best(fn, args.repeats) for name, fn in singles.items()}
        i, d, p = rel.indices, rel.data, rel.indptr
        kernels = {
            "match_topk (numba)": lambda: ranking.match_topk(p, i, d, rec),
            "match_topk (NumPy twin)": lambda: ranking.match_topk_reference(p, i, d, rec),
            "ideal_dcg (numba)": lambda: ranking.ideal_dcg(p, d, k),
            "ideal_dcg (NumPy twin)": lambda: ranking.ideal_dcg_reference(p, d, k),
        }
        kernel_s = {name: 0.0 for name in kernels}
        for name in kernels:
            kernels[name]()  # warm up
        for name, seconds in zip(kernels, _alternating(list(kernels.values()), args.repeats), strict=True):
            kernel_s[name] = seconds
        train_csr = sp.csr_matrix(make_data(args.users, args.items, 2 * args.relevant, 1, seed=1)[1])
        setup_s = best(lambda: Evaluator(train_csr, rel, k), args.repeats)
    result = metrics_at_k(rec, rel, k)
    print(f"metrics_at_k (all 8):      {all_s:8.3f} s   ({args.users / all_s / 1e6:.2f} M users/s)")
    print(
        f"plain Python loop (7):     {py_s:8.3f} s   (scaled from {args.python_users:,} users; "
        f"{py_s / all_s:.0f}x slower)"
    )
    print(f"Evaluator setup:           {setup_s:8.3f} s   (minus {train_csr.nnz:,} train pairs)")
    for name, seconds in single_s.items():
        print(f"  {name:<24}{seconds:8.3f} s")
    print("per-row work, kernel against its NumPy twin:")
    for name, seconds in kernel_s.items():
        print(f"  {name:<24}{seconds:8.3f} s")
    print("values: " + ", ".join(f"{n}={v:.4f}" for n, v in result.items()))


if __name__ == "__main__":
    main()
