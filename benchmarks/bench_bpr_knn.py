"""BPR and ItemKNN against ``implicit`` 0.7, side by side in one run.

    PYTHONPATH=src /work/venv/bin/python benchmarks/bench_bpr_knn.py [--threads 2] [--repeats 3]

Data: ``../shared/datasets/ml-1m-pairs`` (1,000,209 pairs) and a synthetic set of 200,000 users
x 50,000 items x about 2,000,000 pairs (Zipf-like item popularity, lognormal user activity,
counts 1+: the density of a 10% subsample of the issue's 20M set).

* BPR epochs/s: recforge ``BPR`` (Hogwild, and ``deterministic=True``) and
  ``implicit.cpu.bpr.BayesianPersonalizedRanking``, 64 factors, the same threads, BLAS pinned
  to 1 thread. Per run, the median interval between per-epoch callbacks (wall clock, so
  everything each library does per epoch counts); best run of ``--repeats``, the libraries
  alternating. Both fit the binary matrix (BPR uses presence only).
* ItemKNN fit seconds: recforge ``ItemKNN(neighbors=50)`` and ``implicit``'s
  ``CosineRecommender(K=51)`` (implicit keeps each item itself among its K) fed the same
  weighted, row-normalised matrix, so both compute the same cosine; the agreement of the
  neighbour lists is printed as a check.
* NDCG@10 on ml-1m-pairs (per-user random 80/20 split, seed 0, every test pair relevant) and
  on ml-100k (same split, test positives rating >= 4), both BPRs at the same hyperparameters,
  scored through the same top-K code (seen items filtered).
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import platform
import statistics
import time
from pathlib import Path

import numba
import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recforge import BPR, ItemKNN, Popular
from recforge.topk import recommend_all

#: ../shared/datasets beside the project, or wherever RECFORGE_DATASETS points (as in the tests)
DATASETS = Path(
    os.environ.get("RECFORGE_DATASETS") or Path(__file__).resolve().parents[2] / "shared" / "datasets"
)


# data ------------------------------------------------------------------------------------------
def ml1m_pairs() -> sp.csr_matrix:
    with gzip.open(DATASETS / "ml-1m-pairs" / "ratings.parquet.gz") as handle:
        table = pq.read_table(io.BytesIO(handle.read()))
    _, users = np.unique(table["userID"].to_numpy(zero_copy_only=False), return_inverse=True)
    _, items = np.unique(table["movieID"].to_numpy(zero_copy_only=False), return_inverse=True)
    shape = (users.max() + 1, items.max() + 1)
    return sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)


def ml100k() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with gzip.open(DATASETS / "ml-100k" / "u.data.gz") as handle:
        raw = np.loadtxt(handle, dtype=np.int64)
    return raw[:, 0] - 1, raw[:, 1] - 1, raw[:, 2].astype(np.float32)


def synthetic(
    n_users: int = 200_000, n_items: int = 50_000, pairs: int = 2_000_000, seed: int = 0
) -> sp.csr_matrix:
    """Zipf-like items (p ~ (rank + 10)^-1), lognormal users (sigma 1); repeated draws of a
    pair add up into counts, so r >= 1."""
    rng = np.random.default_rng(seed)
    item_p = 1.0 / (np.arange(n_items) + 10.0)
    item_p = item_p[rng.permutation(n_items)]
    item_p /= item_p.sum()
    user_p = rng.lognormal(0.0, 1.0, n_users)
    user_p /= user_p.sum()
    draws = int(pairs * 1.02)  # about 2% of the draws repeat a pair
    users = rng.choice(n_users, draws, p=user_p).astype(np.int64)
    items = rng.choice(n_items, draws, p=item_p).astype(np.int64)
    m = sp.csr_matrix((np.ones(draws, np.float32), (users, items)), shape=(n_users, n_items))
    m.sum_duplicates()
    return m


def split(users: np.ndarray, n_users: int, seed: int = 0) -> np.ndarray:
    """Per-user random 80/20: True for test rows."""
    key = np.random.default_rng(seed).random(len(users))
    order = np.lexsort((key, users))
    counts = np.bincount(users, minlength=n_users)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(users), np.int64)
    rank[order] = np.arange(len(users)) - first[users[order]]
    return rank < np.round(0.2 * counts)[users]


def ndcg_at_10(
    user_factors: np.ndarray, item_factors: np.ndarray, train: sp.csr_matrix, relevant: sp.csr_matrix
) -> float:
    users = np.flatnonzero(np.diff(relevant.indptr))
    ids, _ = recommend_all(user_factors[users], item_factors, 10, train[users])
    return _ndcg(ids, users, relevant)


def _ndcg(ids: np.ndarray, users: np.ndarray, relevant: sp.csr_matrix) -> float:
    hits = np.asarray(relevant[users[:, None], np.maximum(ids, 0)].todense()) * (ids >= 0)
    discount = 1 / np.log2(np.arange(2, 12))
    ideal = np.cumsum(discount)[np.minimum(np.diff(relevant.indptr)[users], 10) - 1]
    return float(((hits * discount).sum(axis=1) / ideal).mean())


# runners ---------------------------------------------------------------------------------------
def time_ours(m: sp.csr_matrix, epochs: int, threads: int, deterministic: bool) -> float:
    stamps: list[float] = []
    model = BPR(
        factors=64, iterations=epochs, num_threads=threads, random_state=0, deterministic=deterministic
    )
    model.fit(m, callback=lambda p: stamps.append(time.perf_counter()))
    return statistics.median(np.diff(stamps))


def time_implicit(m: sp.csr_matrix, epochs: int, threads: int) -> float:
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    stamps: list[float] = []
    model = BayesianPersonalizedRanking(factors=64, iterations=epochs, num_threads=threads, random_state=0)
    model.fit(m, show_progress=False, callback=lambda *a: stamps.append(time.perf_counter()))
    return statistics.median(np.diff(stamps))


def knn_weighted(m: sp.csr_matrix) -> sp.csr_matrix:
    """The matrix ItemKNN computes cosines over: 1 + ln r (r >= 1) / r, unit user rows."""
    from recforge.models.itemknn import _normalise_rows, knn_weights

    return _normalise_rows(sp.csr_matrix((knn_weights(m.data), m.indices, m.indptr), shape=m.shape))


def time_knn(m: sp.csr_matrix, threads: int) -> tuple[float, ItemKNN]:
    start = time.perf_counter()
    model = ItemKNN(neighbors=50, num_threads=threads).fit(m)
    return time.perf_counter() - start, model


def time_implicit_knn(weighted: sp.csr_matrix, threads: int) -> tuple[float, sp.csr_matrix]:
    from implicit.nearest_neighbours import CosineRecommender

    start = time.perf_counter()
    model = CosineRecommender(K=51, num_threads=threads)
    model.fit(weighted, show_progress=False)
    return time.perf_counter() - start, model.similarity


def neighbour_agreement(ours: sp.csr_matrix, theirs: sp.csr_matrix) -> float:
    """Mean fraction of our neighbours that implicit also lists (itself dropped)."""
    theirs = sp.csr_matrix(theirs)
    theirs.setdiag(0)
    theirs.eliminate_zeros()
    both = ours.multiply(theirs > 0)
    per_row = np.diff(ours.indptr)
    shared = np.diff(both.tocsr().indptr)
    rows = per_row > 0
    return float((shared[rows] / per_row[rows]).mean())


# main ------------------------------------------------------------------------------------------
def bench_speed(name: str, m: sp.csr_matrix, args: argparse.Namespace) -> None:
    print(f"\n## {name}: {m.shape[0]:,} users x {m.shape[1]:,} items, {m.nnz:,} pairs")
    binary = sp.csr_matrix((np.ones(m.nnz, np.float32), m.indices, m.indptr), shape=m.shape)
    time_ours(binary[:2000], 2, args.threads, False)  # compile / load cached code off the clock
    time_ours(binary[:2000], 2, args.threads, True)
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        for label, run in (
            ("recforge BPR", lambda: time_ours(binary, args.epochs, args.threads, False)),
            ("recforge BPR deterministic", lambda: time_ours(binary, args.epochs, args.threads, True)),
            ("implicit BPR", lambda: time_implicit(binary, args.epochs, args.threads)),
        ):
            best[label] = min(best.get(label, np.inf), run())
    peer = best["implicit BPR"]
    print("| model | s/epoch | epochs/s | speed vs implicit |")
    print("|---|---|---|---|")
    for label, seconds in best.items():
        print(f"| {label} | {seconds:.3f} | {1 / seconds:.2f} | {peer / seconds:.2f}x |")

    weighted = knn_weighted(m)
    knn_best = {"recforge ItemKNN(50)": np.inf, "implicit CosineRecommender(K=51)": np.inf}
    for _ in range(args.repeats):
        seconds, ours = time_knn(m, args.threads)
        knn_best["recforge ItemKNN(50)"] = min(knn_best["recforge ItemKNN(50)"], seconds)
        seconds, theirs = time_implicit_knn(weighted, args.threads)
        knn_best["implicit CosineRecommender(K=51)"] = min(
            knn_best["implicit CosineRecommender(K=51)"], seconds
        )
    work = float(np.square(np.diff(m.indptr).astype(np.float64)).sum())
    print(f"\n| model | fit s | multiply-adds/s (sum_u |row u|^2 = {work:.3g}) |")
    print("|---|---|---|")
    for label, seconds in knn_best.items():
        print(f"| {label} | {seconds:.2f} | {work / seconds / 1e9:.2f} G |")
    print(f"neighbour lists shared with implicit: {neighbour_agreement(ours.similarity_, theirs):.4f}")


def bench_quality(args: argparse.Namespace) -> None:
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    m = ml1m_pairs().tocoo()
    test = split(m.row, m.shape[0])
    train = sp.csr_matrix((m.data[~test], (m.row[~test], m.col[~test])), shape=m.shape)
    relevant = sp.csr_matrix((m.data[test], (m.row[test], m.col[test])), shape=m.shape)
    u, i, r = ml100k()
    shape = (u.max() + 1, i.max() + 1)
    t100 = split(u, shape[0])
    train100 = sp.csr_matrix((r[~t100], (u[~t100], i[~t100])), shape=shape)
    pos = t100 & (r >= 4)
    relevant100 = sp.csr_matrix((np.ones(pos.sum()), (u[pos], i[pos])), shape=shape)

    print("\n## NDCG@10 (same split, same top-K code)")
    print("| model | ml-1m-pairs | ml-100k |")
    print("|---|---|---|")
    for label, make in (
        ("Popular", lambda: Popular()),
        ("recforge ItemKNN(50)", lambda: ItemKNN(neighbors=50, num_threads=args.threads)),
    ):
        scores = []
        for tr, rel in ((train, relevant), (train100, relevant100)):
            model = make().fit(tr)
            users = np.flatnonzero(np.diff(rel.indptr))
            scores.append(_ndcg(model.recommend(users, k=10)[0], users, rel))
        print(f"| {label} | {scores[0]:.3f} | {scores[1]:.3f} |")
    for lr in (0.01, 0.05):
        for label in ("recforge BPR", "recforge BPR deterministic", "implicit BPR"):
            scores = []
            for tr, rel in ((train, relevant), (train100, relevant100)):
                binary = sp.csr_matrix((np.ones(tr.nnz, np.float32), tr.indices, tr.indptr), shape=tr.shape)
                if label == "implicit BPR":
                    peer = BayesianPersonalizedRanking(
                        factors=64, learning_rate=lr, iterations=100, num_threads=args.threads, random_state=0
                    )
                    peer.fit(binary, show_progress=False)
                    factors = (peer.user_factors, peer.item_factors)
                else:
                    ours = BPR(
                        factors=64,
                        learning_rate=lr,
                        iterations=100,
                        num_threads=args.threads,
                        random_state=0,
                        deterministic=label.endswith("deterministic"),
                    ).fit(binary)
                    factors = (ours.user_factors_, ours.item_factors_)
                scores.append(ndcg_at_10(*factors, tr, rel))
            print(f"| {label}, 64 f., lr {lr}, reg 0.01, 100 epochs | {scores[0]:.3f} | {scores[1]:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    import implicit

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    print(
        f"machine: {cpu}, {numba.config.NUMBA_NUM_THREADS} cores; numba {numba.__version__}, "  # type: ignore[attr-defined]
        f"implicit {implicit.__version__}; {args.threads} threads, BLAS 1 thread"
    )
    with threadpool_limits(limits=1, user_api="blas"):
        bench_speed("ml-1m-pairs", ml1m_pairs(), args)
        bench_speed("synthetic 2M", synthetic(), args)
        if not args.skip_quality:
            bench_quality(args)


if __name__ == "__main__":
    main()
