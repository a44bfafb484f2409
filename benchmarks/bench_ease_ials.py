"""EASE's fit time, and ALS with Rendle et al.'s regularisation per iteration beside today's ALS
(issue 16), on ml-1m-pairs (6,040 users x 3,706 items, 1,000,209 pairs, ``r = 1``).

    PYTHONPATH=src python benchmarks/bench_ease_ials.py [--threads 2] [--rounds 3]
        [--previous /tmp/prev/src] [--json out.json]

    # the tree before issue 16 (main just before its merge), for --previous:
    mkdir -p /tmp/prev && git archive 8e9bd35 src | tar -x -C /tmp/prev

* EASE (``regularization=500``): the whole ``fit`` (Gram matrix by the numba walk, LAPACK's
  Cholesky inverse in float32, B), on 1 and on ``--threads`` threads, best of ``--rounds``; the
  inverse's ``n^3`` flops give its GFLOP/s.
* ALS, 64 factors, 15 iterations, ``--threads`` numba threads, BLAS pinned to 1: seconds per iteration
  (``FitProgress.elapsed`` after the last iteration / 15) for CG (3 steps) and Cholesky, with the
  defaults (``regularization_scaling="none"``, ``unobserved_weight=1``: today's ALS) and with
  ``regularization_scaling="frequency", regularization_exponent=1, unobserved_weight=0.1``;
  and, for the same defaults, the tree at ``--previous`` (the code before these parameters
  existed; without ``--previous`` that comparison is left out). Every configuration runs in
  its own process, the configurations alternate, and each keeps its best of ``--rounds`` (the
  machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASETS = Path(os.environ.get("RECFORGE_DATASETS") or HERE.parents[1] / "shared" / "datasets")
DATA = DATASETS / "ml-1m-pairs" / "ratings.parquet.gz"
WORKER = """
import gzip, io, json, sys, time
import numpy as np, pyarrow.parquet as pq, scipy.sparse as sp
from threadpoolctl import threadpool_limits
import numba
from recforge.data.interactions import Interactions
spec = json.loads(sys.argv[1])
numba.set_num_threads(spec["threads"])
with gzip.open(spec["data"]) as handle:
    table = pq.read_table(io.BytesIO(handle.read()))
_, users = np.unique(table["userID"].to_numpy(zero_copy_only=False), return_inverse=True)
_, items = np.unique(table["movieID"].to_numpy(zero_copy_only=False), return_inverse=True)
shape = (users.max() + 1, items.max() + 1)
matrix = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
data = Interactions.from_csr(matrix)
if spec["model"] == "ease":
    from recforge import EASE
    with threadpool_limits(spec["threads"], "blas"):
        EASE(regularization=500.0, num_threads=spec["threads"]).fit(data)  # warm (compile)
        start = time.perf_counter()
        EASE(regularization=500.0, num_threads=spec["threads"]).fit(data)
        seconds = time.perf_counter() - start
        from recforge.kernels.similarity import item_gram
        from scipy.linalg import lapack
        t0 = time.perf_counter(); g = item_gram(data.matrix); t1 = time.perf_counter()
        g[range(len(g)), range(len(g))] += 500.0
        f, _ = lapack.spotrf(g.T, lower=0, clean=0, overwrite_a=1)
        lapack.spotri(f, lower=0, overwrite_c=1); t2 = time.perf_counter()
    print(json.dumps({{"seconds": seconds, "gram": t1 - t0, "inverse": t2 - t1}}))
else:
    from recforge import ALS
    params = dict(spec["params"], factors=64, iterations=15, random_state=0, num_threads=spec["threads"])
    ALS(**dict(params, iterations=1)).fit(data)  # warm (compile)
    seen = []
    ALS(**params).fit(data, callback=lambda p: seen.append(p.elapsed) and None)
    print(json.dumps({{"per_iteration": seen[-1] / len(seen)}}))
"""


def run(tree: Path, spec: dict[str, Any]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = WORKER.format()
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--previous", help="src of a tree before issue 16 (see the module doc)")
    parser.add_argument("--json")
    args = parser.parse_args()
    here = HERE.parent / "src"
    frequency = {
        "regularization_scaling": "frequency",
        "regularization_exponent": 1.0,
        "unobserved_weight": 0.1,
    }
    cases: list[tuple[str, Path, dict[str, Any]]] = [
        ("ease, 1 thread", here, {"model": "ease", "threads": 1})
    ]
    if args.threads != 1:
        cases.append((f"ease, {args.threads} threads", here, {"model": "ease", "threads": args.threads}))
    for solver in ("cg", "cholesky"):
        base = {"solver": solver, "regularization": 0.1}
        cases += [
            *(
                [(f"als {solver}, previous tree", Path(args.previous), {"model": "als", "params": base})]
                if args.previous
                else []
            ),
            (f"als {solver}, defaults", here, {"model": "als", "params": base}),
            (
                f"als {solver}, frequency",
                here,
                {"model": "als", "params": {**base, **frequency, "regularization": 1e-3}},
            ),
        ]
    best: dict[str, dict[str, float]] = {}
    load = [os.getloadavg()]
    for _ in range(args.rounds):
        for name, tree, spec in cases:
            spec = {"threads": args.threads, "data": str(DATA), **spec}
            result = run(tree, spec)
            key = "seconds" if "seconds" in result else "per_iteration"
            if name not in best or result[key] < best[name][key]:
                best[name] = result
        load.append(os.getloadavg())
    n = 3706
    for name, result in best.items():
        if "seconds" in result:
            gflops = n**3 / result["inverse"] / 1e9
            print(
                f"{name:<28} fit {result['seconds']:.2f} s (Gram {result['gram']:.2f} s, "
                f"inverse {result['inverse']:.2f} s = {gflops:.1f} GFLOP/s)"
            )
        else:
            print(f"{name:<28} {result['per_iteration'] * 1000:.0f} ms per iteration")
    print(f"load average (1, 5, 15 min) before and after each round: {load}")
    if args.json:
        Path(args.json).write_text(json.dumps({"best": best, "load": load}, indent=2))


if __name__ == "__main__":
    main()
