"""Tuning benchmark: ``recforge.tune`` on a time budget (across model families by default)
against ``implicit`` ALS chosen from a 16-point grid, on the honest protocol (issues 6 and 16).

    PYTHONPATH=src python benchmarks/bench_tuning.py [--data ml-100k,ml-1m-pairs] [--model auto]
        [--seeds 0,1,2] [--timeout 300] [--threads 2] [--json out.json]

Protocol (``../shared/datasets/README.md``), per data set:

1. a per-user random 80/20 split, seed 0 (:func:`recforge.evaluation.random_split`); test
   positives: ml-100k test ratings >= 4 (``u.data`` in file order as rating events, the rating
   as ``r``, no time decay), ml-1m-pairs every test pair (``r = 1``);
2. recforge sees only the training part: ``tune(model, train=train, trials=None,
   timeout=--timeout, metric="ndcg,map", random_state=seed)``, scored on its default
   per-user folds of the training part (3 folds of 20% on both data sets); its choice is refit
   on the whole training part and scored once on the test part;
3. ``implicit``: ALS with its defaults (CG, 15 iterations, ``r`` as its confidence, the README's
   setting) over factors {16, 32, 64, 128} x regularization {0.1, 1, 10, 100}: chosen on a
   validation split of the training part (per user 80/20, seed 1) and refit (the honest
   baseline), and, as the oracle no honest procedure is entitled to, the best grid point chosen
   on the test part itself;
4. every model is scored through the same top-K code (seen items filtered) and metrics: NDCG@10
   and MAP@10.

Threads: numba, BLAS in EASE's fit, and ``implicit`` get ``--threads`` (BLAS is pinned to 1
under ``implicit``, as it asks; ALS's fits pin BLAS to 1 themselves). Times are wall clock: the
whole search, the refit.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recforge.data.interactions import Interactions
from recforge.evaluation import Evaluator, metrics_at_k, random_split, tune
from recforge.models.registry import automl_models
from recforge.topk import recommend_all
from recforge.weighting import Weighting

DATASETS = os.environ.get("RECFORGE_DATASETS") or os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "datasets"
)
GRID = [(f, r) for f in (16, 32, 64, 128) for r in (0.1, 1.0, 10.0, 100.0)]


# data --------------------------------------------------------------------------------------------
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


def ml1m_pairs() -> Interactions:
    """ml-1m-pairs: every rated pair, ``r = 1`` (ids sorted as strings)."""
    with gzip.open(os.path.join(DATASETS, "ml-1m-pairs", "ratings.parquet.gz")) as handle:
        table = pq.read_table(io.BytesIO(handle.read()))
    _, users = np.unique(table["userID"].to_numpy(zero_copy_only=False), return_inverse=True)
    _, items = np.unique(table["movieID"].to_numpy(zero_copy_only=False), return_inverse=True)
    shape = (users.max() + 1, items.max() + 1)
    matrix = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
    return Interactions.from_csr(matrix)


def outer_split(name: str) -> tuple[Any, float | None]:
    """The data set's 80/20 split (seed 0) and its relevance threshold."""
    if name == "ml-100k":
        no_decay = Weighting(half_life_days=None)
        return random_split(ml100k_events(), 0.2, random_state=0, weighting=no_decay), 4.0
    if name == "ml-1m-pairs":
        return random_split(ml1m_pairs(), 0.2, random_state=0), None
    raise SystemExit(f"unknown data set {name!r}")


# implicit --------------------------------------------------------------------------------------
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


def run_implicit(outer: Any, min_rating: float | None, threads: int) -> dict[str, Any]:
    inner = random_split(outer.train, 0.2, random_state=1)
    validation = Evaluator(inner.train, inner.test, 10, min_rating=min_rating, metrics=("ndcg", "map"))
    test = Evaluator(outer.train, outer.test, 10, min_rating=min_rating, metrics=("ndcg", "map"))
    start = time.perf_counter()
    grid = []
    for factors, regularization in GRID:
        scores = scores_of(*fit_implicit(inner.train, factors, regularization, threads), validation)
        on_test = scores_of(*fit_implicit(outer.train, factors, regularization, threads), test)
        point = {"factors": factors, "regularization": regularization}
        grid.append({**point, "validation": scores, "test": on_test})
    seconds = time.perf_counter() - start
    chosen = max(grid, key=lambda row: row["validation"]["ndcg"])
    oracle = max(grid, key=lambda row: row["test"]["ndcg"])
    return {
        "seconds": seconds,
        "validation_chosen": {k: chosen[k] for k in ("factors", "regularization", "validation", "test")},
        "test_chosen": {k: oracle[k] for k in ("factors", "regularization", "test")},
        "grid": grid,
    }


# recforge ----------------------------------------------------------------------------------------
def run_recforge(outer: Any, min_rating: float | None, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    families = automl_models() if args.model == "auto" else [args.model]
    fixed = {name: {"num_threads": args.threads} for name in families}
    start = time.perf_counter()
    result = tune(
        args.model,
        train=outer.train,
        k=10,
        metric="ndcg,map",
        min_rating=min_rating,
        trials=None,
        timeout=args.timeout,
        random_state=seed,
        fixed_params=fixed if args.model == "auto" else fixed[args.model],
        show_progress=False,
    )
    search = time.perf_counter() - start
    test = Evaluator(outer.train, outer.test, 10, min_rating=min_rating, metrics=("ndcg", "map"))
    start = time.perf_counter()
    model = result.make_model().fit(outer.train)
    refit = time.perf_counter() - start
    families_found = result.families or {result.model: result}
    return {
        "search_seconds": search,
        "refit_seconds": refit,
        "model": result.model,
        "best_params": result.best_params,
        "folds": result.folds,
        "validation": {key: result.best_scores[key] for key in ("ndcg", "map")},
        "validation_spread": result.best_spread,
        "test": test.score(model),
        "trials": len(result.trials),
        "complete": result.count("complete"),
        "pruned": result.count("pruned"),
        "families": {
            name: {
                "best_params": r.best_params,
                "validation": r.best_scores,
                "trials": len(r.trials),
                "complete": r.count("complete"),
                "pruned": r.count("pruned"),
                "seconds": r.seconds,
            }
            for name, r in families_found.items()
        },
        "skipped": result.info.get("skipped", {}),
        "trial_log": [t.to_dict() for t in result.trials],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-100k,ml-1m-pairs")
    parser.add_argument("--model", default="auto", help="auto, or one model name")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2", help="tune's random_state values, comma-separated")
    parser.add_argument("--no-implicit", action="store_true", help="skip the implicit grid")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    import numba

    if not args.no_implicit:
        import implicit.cpu.als  # noqa: F401 - loaded before BLAS is pinned, so the pin covers it
    numba.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_before": os.getloadavg(),
        "threads": args.threads,
        "timeout": args.timeout,
        "model": args.model,
        "data": {},
    }
    with threadpool_limits(args.threads, "blas"):
        for name in args.data.split(","):
            outer, min_rating = outer_split(name)
            entry: dict[str, Any] = {"outer": outer.summary()}
            if not args.no_implicit:
                with threadpool_limits(1, "blas"):  # implicit asks for it (its own threads solve)
                    entry["implicit"] = run_implicit(outer, min_rating, args.threads)
            entry["recforge"] = {}
            for seed in map(int, args.seeds.split(",")):
                entry["recforge"][str(seed)] = run_recforge(outer, min_rating, args, seed)
                entry["recforge"][str(seed)]["load_after"] = os.getloadavg()
                report(name, entry)
            results["data"][name] = entry
            if args.json:
                with open(args.json, "w") as handle:
                    json.dump(results, handle, indent=2, default=str)


def report(name: str, entry: dict[str, Any]) -> None:
    print(f"\n{name}")
    print(f"{'side':<34} {'valid NDCG':>10} {'test NDCG@10':>12} {'test MAP@10':>11} {'search s':>9}")
    peer = entry.get("implicit")
    if peer:
        chosen, oracle = peer["validation_chosen"], peer["test_chosen"]
        print(
            f"{'implicit grid, chosen on validation':<34} {chosen['validation']['ndcg']:>10.4f} "
            f"{chosen['test']['ndcg']:>12.4f} {chosen['test']['map']:>11.4f} {peer['seconds']:>9.1f}  "
            f"{chosen['factors']} f, reg {chosen['regularization']}"
        )
        print(
            f"{'implicit grid, chosen on test':<34} {'':>10} {oracle['test']['ndcg']:>12.4f} "
            f"{oracle['test']['map']:>11.4f} {'':>9}  {oracle['factors']} f, reg {oracle['regularization']}"
        )
    for seed, side in entry["recforge"].items():
        print(
            f"{'recforge tune, seed ' + seed:<34} {side['validation']['ndcg']:>10.4f} "
            f"{side['test']['ndcg']:>12.4f} {side['test']['map']:>11.4f} {side['search_seconds']:>9.1f}  "
            f"{side['model']} "
            f"{side['best_params']} ({side['complete']} complete, {side['pruned']} pruned)"
        )
        for family, found in side["families"].items():
            print(
                f"    {family:<10} valid NDCG {found['validation']['ndcg']:.4f} in {found['seconds']:.0f} s, "
                f"{found['trials']} trials: {found['best_params']}"
            )


if __name__ == "__main__":
    main()
