"""Tuning benchmark: ``recforge.tune`` (TPE, 16 trials, 5-minute budget) against ``implicit`` ALS
chosen from a 16-point grid on the same validation split (issue 6's honest protocol).

    PYTHONPATH=src python benchmarks/bench_tuning.py [--trials 16] [--timeout 300] [--threads 2]
        [--seeds 0] [--json out.json]

Protocol, on ml-100k (``../shared/datasets``; ``u.data`` in file order as rating events):

1. per-user random 80/20 split, seed 0 (:func:`recforge.evaluation.random_split`, the split of
   the datasets README); test positives: test ratings >= 4;
2. tuning sees only the training part, split again per user 80/20 (seed 1) into inner-train and
   validation (positives: ratings >= 4);
3. recforge: ``tune("als", trials=16, timeout=300)`` over its default search space (factors,
   regularization, alpha, iterations), NDCG@10 on validation; ``implicit``: ALS with its
   defaults (CG, 15 iterations, alpha 1, the rating as its confidence: the README's reference
   setting) for factors {16, 32, 64, 128} x regularization {0.1, 1, 10, 100}, best NDCG@10
   on validation;
4. each side's chosen configuration is refit on the whole training part and scored once on the
   test part: NDCG@10 and MAP@10, through the same top-K code (seen items filtered) and metrics.

Threads: numba and ``implicit`` get ``--threads``; BLAS is pinned to 1 thread. Times are wall
clock of the whole search (fits and validation scoring) and of the refit.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from threadpoolctl import threadpool_limits

from recforge import ALS
from recforge.data.interactions import Interactions
from recforge.evaluation import Evaluator, metrics_at_k, random_split, tune
from recforge.topk import recommend_all
from recforge.weighting import Weighting

DATASETS = os.environ.get("RECFORGE_DATASETS") or os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "datasets"
)
GRID = [(f, r) for f in (16, 32, 64, 128) for r in (0.1, 1.0, 10.0, 100.0)]


def ml100k_events() -> pa.Table:
    """``u.data`` (user, item, rating, unix time) as rating events, in file order."""
    with gzip.open(os.path.join(DATASETS, "ml-100k", "u.data.gz"), "rb") as handle:
        raw = pacsv.read_csv(
            handle,
            read_options=pacsv.ReadOptions(column_names=["user", "item", "rating", "time"]),
            parse_options=pacsv.ParseOptions(delimiter="\t"),
            convert_options=pacsv.ConvertOptions(
                column_types={"user": pa.string(), "item": pa.string(), "rating": pa.float64()}
            ),
        )
    n = raw.num_rows
    return pa.table(
        {
            "user_id": raw["user"],
            "item_id": raw["item"],
            "event_type": pa.array(["rating"] * n),
            "value": raw["rating"],
            "timestamp": pa.compute.multiply(raw["time"], 1_000_000).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def scores_of(user_factors: np.ndarray, item_factors: np.ndarray, evaluator: Evaluator) -> dict[str, float]:
    """NDCG@k and MAP@k of factor lists, seen items filtered, the served top-K code."""
    train = evaluator.train
    assert isinstance(train, Interactions)
    users = evaluator.users
    ids, _ = recommend_all(
        np.ascontiguousarray(user_factors[users]),
        np.ascontiguousarray(item_factors),
        evaluator.k,
        train.matrix[users],
    )
    result = metrics_at_k(ids, evaluator.relevant, evaluator.k, ("ndcg", "map"))
    return {key: float(value) for key, value in result.items()}


def fit_implicit(
    train: Interactions, factors: int, regularization: float, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=factors, regularization=regularization, num_threads=threads, random_state=0,
        calculate_training_loss=False,
    )  # fmt: skip
    model.fit(train.matrix, show_progress=False)
    return model.user_factors, model.item_factors


def run_implicit(inner: Any, outer: Any, threads: int) -> dict[str, Any]:
    validation = Evaluator(inner.train, inner.test, 10, min_rating=4, metrics=("ndcg", "map"))
    start = time.perf_counter()
    grid = []
    for factors, regularization in GRID:
        scores = scores_of(*fit_implicit(inner.train, factors, regularization, threads), validation)
        grid.append({"factors": factors, "regularization": regularization, **scores})
    search = time.perf_counter() - start
    best = max(grid, key=lambda row: row["ndcg"])
    test = Evaluator(outer.train, outer.test, 10, min_rating=4, metrics=("ndcg", "map"))
    start = time.perf_counter()
    factors = fit_implicit(outer.train, best["factors"], best["regularization"], threads)
    refit = time.perf_counter() - start
    return {
        "search_seconds": search,
        "refit_seconds": refit,
        "best_params": {"factors": best["factors"], "regularization": best["regularization"]},
        "validation": {"ndcg": best["ndcg"], "map": best["map"]},
        "test": scores_of(*factors, test),
        "grid": grid,
    }


def run_recforge(inner: Any, outer: Any, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    result = tune(
        "als",
        train=inner.train,
        validation=inner.test,
        k=10,
        metric="ndcg",
        min_rating=4,
        trials=args.trials,
        timeout=args.timeout,
        random_state=seed,
        fixed_params={"num_threads": args.threads},
        show_progress=False,
    )
    search = time.perf_counter() - start
    test = Evaluator(outer.train, outer.test, 10, min_rating=4, metrics=("ndcg", "map"))
    start = time.perf_counter()
    model = ALS(**result.best_params).fit(outer.train)
    refit = time.perf_counter() - start
    return {
        "search_seconds": search,
        "refit_seconds": refit,
        "best_params": result.best_params,
        "validation": {key: result.best_scores[key] for key in ("ndcg", "map")},
        "test": test.score(model),
        "trials": len(result.trials),
        "complete": result.count("complete"),
        "pruned": result.count("pruned"),
        "trial_log": [t.to_dict() for t in result.trials],
    }


def row(label: str, side: dict[str, Any], note: str) -> str:
    return (
        f"{label:<28} {side['validation']['ndcg']:>10.4f} {side['test']['ndcg']:>12.4f} "
        f"{side['test']['map']:>11.4f} {side['search_seconds']:>9.1f} {side['refit_seconds']:>8.2f}  {note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", default="0", help="tune's random_state values, comma-separated")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    import implicit.cpu.als  # noqa: F401 - loaded before BLAS is pinned, so the pin covers it
    import numba

    numba.set_num_threads(args.threads)
    events = ml100k_events()
    outer = random_split(events, 0.2, random_state=0, weighting=Weighting(half_life_days=None))
    inner = random_split(outer.train, 0.2, random_state=1)
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads,
        "trials": args.trials,
        "timeout": args.timeout,
        "outer": outer.summary(),
        "inner": inner.summary(),
    }
    with threadpool_limits(1, "blas"):
        # warm-up: compile recforge's kernels, start implicit's pool (not timed)
        warm = ALS(factors=8, iterations=2, num_threads=args.threads).fit(inner.train)
        Evaluator(inner.train, inner.test, 10, min_rating=4).score(warm)
        fit_implicit(inner.train, 8, 1.0, args.threads)
        results["implicit"] = run_implicit(inner, outer, args.threads)
        results["recforge"] = {
            str(seed): run_recforge(inner, outer, args, seed) for seed in map(int, args.seeds.split(","))
        }

    print(f"ml-100k, {args.threads} threads, {args.trials} trials / {args.timeout:g} s budget")
    header = ("valid NDCG", 10), ("test NDCG@10", 12), ("test MAP@10", 11), ("search s", 9), ("refit s", 8)
    print(f"{'side':<28} " + " ".join(f"{name:>{width}}" for name, width in header))
    peer = results["implicit"]
    print(row("implicit ALS, 16-point grid", peer, str(peer["best_params"])))
    for seed, side in results["recforge"].items():
        note = f"{side['complete']} complete, {side['pruned']} pruned; {side['best_params']}"
        print(row(f"recforge tune (seed {seed})", side, note))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2, default=str)


if __name__ == "__main__":
    main()
