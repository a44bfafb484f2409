"""Top-K for every user and similar items for every item: recforge against implicit and the
bare multiply, side by side in one run.

    PYTHONPATH=src /work/venv/bin/python benchmarks/bench_topk.py [--repeats 3] [--threads 2]

Runs, alternating, best of ``--repeats``:

* where the multiply runs best: 512 x 512 score tiles made by numba threads each calling
  one-threaded BLAS (recforge's design) or by NumPy with BLAS on all cores or on one;
* recommend for all users: ``recforge.recommend_all`` (numba threads, BLAS pinned to one thread
  inside), implicit 0.7.3's ``AlternatingLeastSquares.recommend(userids=all, N=k,
  filter_already_liked_items=True)`` on the same factors (OpenMP ``num_threads=--threads``,
  BLAS at ``--implicit-blas-threads``, 1 by default, its fastest setting), and a bare NumPy
  ``U[block] @ V.T`` loop into a reused buffer, without any selection (BLAS threads =
  ``--threads``, users per block the fastest of ``--bare-blocks``), and the other design:
  that loop with recforge's numba selection (``select_topk``) over each block;
* similar items for all items: ``recforge.similar_items_all`` against implicit's
  ``similar_items(all items, N=k + 1)`` (implicit returns the item itself first; recforge never
  does, so both give ``k`` neighbours);
* peak extra memory (``VmHWM`` minus the resident size before the call, in a fresh process) of
  ``recommend_all`` and ``similar_items_all`` over ``--memory-items`` items.

Data: random normal factors (scale 0.1) and a Zipf-like interaction set (item popularity
``~ 1 / rank``, user activity ``~ 1 / rank ** 0.5``, ids shuffled) of exactly
``--interactions`` distinct (user, item) pairs, excluded as "already seen". GFLOP/s counts the
scoring only: ``2 * n_rows * n_items * factors``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from recforge.topk import recommend_all, select_topk, similar_items_all  # noqa: E402


def implicit_version() -> str:
    try:
        import implicit
    except ImportError:
        return "not installed"
    return str(implicit.__version__)


def implicit_als(factors: int, threads: int) -> object:
    """implicit's CPU ALS model, only to call its recommend/similar_items on given factors.
    Its constructor warns that OpenBLAS has a thread pool (a warning about fitting); the
    benchmark pins BLAS itself."""
    import warnings

    from implicit.cpu.als import AlternatingLeastSquares

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return AlternatingLeastSquares(factors=factors, num_threads=threads)


def zipf_interactions(n_users: int, n_items: int, nnz: int, rng: np.random.Generator) -> sp.csr_matrix:
    """``nnz`` distinct (user, item) pairs, items ~ 1/rank, users ~ 1/rank**0.5, ids shuffled."""
    item_p = 1.0 / np.arange(1, n_items + 1)
    user_p = 1.0 / np.sqrt(np.arange(1, n_users + 1))
    item_p /= item_p.sum()
    user_p /= user_p.sum()
    item_perm, user_perm = rng.permutation(n_items), rng.permutation(n_users)
    keys = np.zeros(0, dtype=np.int64)
    while len(keys) < nnz:
        draw = int((nnz - len(keys)) * 1.5) + 1000
        users = user_perm[rng.choice(n_users, draw, p=user_p)]
        items = item_perm[rng.choice(n_items, draw, p=item_p)]
        keys = np.unique(np.concatenate([keys, users.astype(np.int64) * n_items + items]))
    keys = rng.choice(keys, nnz, replace=False)
    matrix = sp.csr_matrix(
        (np.ones(nnz, dtype=np.float32), (keys // n_items, keys % n_items)), shape=(n_users, n_items)
    )
    matrix.sort_indices()
    return matrix


def timed(runners: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    """Run every runner ``repeats`` times, alternating; wall and CPU seconds of each run."""
    walls: dict[str, list[float]] = {name: [] for name in runners}
    cpus: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
            print(f"  {name:<22} {walls[name][-1]:7.2f} s wall {cpus[name][-1]:7.2f} s cpu", flush=True)
    return {
        name: {
            "best": min(walls[name]),
            "median": statistics.median(walls[name]),
            "cpu_best": min(cpus[name]),
        }
        for name in runners
    }


def report(title: str, results: dict[str, dict[str, float]], flops: float, reference: str) -> None:
    """Best and median wall seconds, the best CPU seconds (all threads; the steadier measure on a
    shared machine), GFLOP/s on the best wall time and per CPU second, and ratios to
    ``reference`` by wall and by CPU time."""
    print(f"\n{title}")
    header = ("best s", "median s", "cpu s", "GFLOP/s", "GFLOP/cpu-s", "x wall", "x cpu")
    print(f"  {'(x: against ' + reference + ')':<36}" + "".join(f"{h:>12}" for h in header))
    base, base_cpu = results[reference]["best"], results[reference]["cpu_best"]
    for name, r in results.items():
        cells = (
            r["best"],
            r["median"],
            r["cpu_best"],
            flops / r["best"] / 1e9,
            flops / r["cpu_best"] / 1e9,
            r["best"] / base,
            r["cpu_best"] / base_cpu,
        )
        print(f"  {name:<36}" + "".join(f"{c:12.3f}" if c < 10 else f"{c:12.1f}" for c in cells))


def agreement(ids_a: np.ndarray, ids_b: np.ndarray) -> float:
    """Share of rows whose top-k sets are identical."""
    return float(np.mean([set(a) == set(b) for a, b in zip(ids_a, ids_b, strict=True)]))


def calibrate_bare_block(users: np.ndarray, items: np.ndarray, args: argparse.Namespace) -> int:
    """The fastest users-per-block of the bare loop, from a quick run over some users."""
    sample = users[: min(len(users), 16_384)]
    best, best_time = 0, np.inf
    for block in args.bare_blocks:
        buffer = np.empty((block, len(items)), dtype=np.float32)
        with threadpool_limits(args.threads, "blas"):
            for _ in range(2):
                start = time.perf_counter()
                for row in range(0, len(sample), block):
                    stop = min(row + block, len(sample))
                    np.matmul(sample[row:stop], items.T, out=buffer[: stop - row])
                seconds = time.perf_counter() - start
                if seconds < best_time:
                    best, best_time = block, seconds
        del buffer
    print(f"bare loop: {best} users per block, the fastest of {args.bare_blocks}")
    return best


def bench_recommend(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, object]:
    n_users, n_items, f, k = args.users, args.items, args.factors, args.k
    users = (rng.standard_normal((n_users, f)) * 0.1).astype(np.float32)
    items = (rng.standard_normal((n_items, f)) * 0.1).astype(np.float32)
    seen = zipf_interactions(n_users, n_items, args.interactions, rng)
    model: Any = implicit_als(f, args.threads)
    model.user_factors, model.item_factors = users, items
    all_users = np.arange(n_users)
    block = calibrate_bare_block(users, items, args)
    buffer = np.empty((block, n_items), dtype=np.float32)

    def bare() -> None:
        with threadpool_limits(args.threads, "blas"):
            for start in range(0, n_users, block):
                stop = min(start + block, n_users)
                np.matmul(users[start:stop], items.T, out=buffer[: stop - start])

    def alternating() -> None:
        """The other design: BLAS on all cores for a block of users x all items, then the numba
        selection on all cores over that block."""
        for start in range(0, n_users, block):
            stop = min(start + block, n_users)
            with threadpool_limits(args.threads, "blas"):
                np.matmul(users[start:stop], items.T, out=buffer[: stop - start])
            select_topk(buffer[: stop - start], k, seen[start:stop], num_threads=args.threads)

    def ours() -> tuple[np.ndarray, np.ndarray]:
        return recommend_all(users, items, k, seen, num_threads=args.threads, progress=False)

    def theirs() -> tuple[np.ndarray, np.ndarray]:
        with threadpool_limits(args.implicit_blas_threads, "blas"):
            return model.recommend(all_users, seen, N=k, filter_already_liked_items=True)

    recommend_all(users[:1000], items, k, seen[:1000], num_threads=args.threads)  # compile / load cache
    print(f"recommend: {n_users} users x {n_items} items, {f} factors, top-{k}, {seen.nnz} seen excluded")
    runners: dict[str, Callable[[], object]] = {
        "recforge.recommend_all": ours,
        "numpy U@V.T loop": bare,
        "BLAS block + select": alternating,
    }
    if not args.skip_implicit:
        runners["implicit recommend"] = theirs
    results = timed(runners, args.repeats)
    flops = 2.0 * n_users * n_items * f
    report("recommend for all users", results, flops, "numpy U@V.T loop")
    out: dict[str, object] = {
        "results": results,
        "gflop": flops / 1e9,
        "seen": int(seen.nnz),
        "bare_block": block,
    }
    if not args.skip_implicit:
        ids, _ = ours()
        sample = rng.choice(n_users, 2000, replace=False)
        their_ids, _ = theirs()
        out["agreement_with_implicit"] = agreement(ids[sample], their_ids[sample])
        ratio = results["recforge.recommend_all"]["best"] / results["implicit recommend"]["best"]
        share = out["agreement_with_implicit"]
        print(f"  x implicit: {ratio:.3f}; identical top-{k} sets on {share:.1%} of 2000 users")
    return out


def bench_similar(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, object]:
    n_items, f, k = args.items, args.factors, args.k
    items = (rng.standard_normal((n_items, f)) * 0.1).astype(np.float32)
    model: Any = implicit_als(f, args.threads)
    model.user_factors, model.item_factors = items[:1], items
    all_items = np.arange(n_items)

    def ours() -> tuple[np.ndarray, np.ndarray]:
        return similar_items_all(items, k, num_threads=args.threads, progress=False)

    def ours_streamed() -> tuple[np.ndarray, np.ndarray]:
        return similar_items_all(items, k, num_threads=args.threads, symmetric=False, progress=False)

    def theirs() -> tuple[np.ndarray, np.ndarray]:
        with threadpool_limits(args.implicit_blas_threads, "blas"):
            return model.similar_items(all_items, N=k + 1)

    similar_items_all(items[:2000], k, num_threads=args.threads)
    similar_items_all(items[:2000], k, num_threads=args.threads, symmetric=False)
    print(f"\nsimilar items: {n_items} items, {f} factors, top-{k}")
    runners: dict[str, Callable[[], object]] = {
        "recforge symmetric": ours,
        "recforge row blocks": ours_streamed,
    }
    if not args.skip_implicit:
        runners["implicit similar_items"] = theirs
    results = timed(runners, args.repeats)
    flops = 2.0 * n_items * n_items * f
    reference = "recforge row blocks" if args.skip_implicit else "implicit similar_items"
    report("similar items (GFLOP/s counts the full n x n product)", results, flops, reference)
    out: dict[str, object] = {"results": results, "gflop": flops / 1e9}
    if not args.skip_implicit:
        ids, _ = ours()
        their_ids, _ = theirs()
        sample = rng.choice(n_items, 2000, replace=False)
        # implicit lists the item itself among its k + 1; drop it to compare neighbours
        theirs_wo_self = [
            [j for j in row if j != i][:k] for i, row in zip(sample, their_ids[sample], strict=True)
        ]
        out["agreement_with_implicit"] = agreement(ids[sample], np.array(theirs_wo_self))
        print(f"  identical neighbour sets on {out['agreement_with_implicit']:.1%} of 2000 items")
    return out


def bench_tiles(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, object]:
    """Where the multiply runs best: the same 512 x 512 score tiles of ``U @ V.T`` made by
    numba threads each calling single-threaded BLAS (``np.dot`` in nopython mode, recforge's
    design), by NumPy from Python with BLAS on all cores, and by NumPy with one BLAS thread."""
    import numba

    from recforge._numba import prange, thread_limits

    @numba.njit(parallel=True, nogil=True)
    def numba_tiles(users: np.ndarray, items: np.ndarray, rows: int, cols: int) -> None:
        for b in prange((len(users) + rows - 1) // rows):
            buffer = np.empty(rows * cols, dtype=np.float32)
            q = users[b * rows : min((b + 1) * rows, len(users))]
            for j0 in range(0, len(items), cols):
                v = items[j0 : min(j0 + cols, len(items))]
                np.dot(q, v.T, buffer[: len(q) * len(v)].reshape((len(q), len(v))))

    def numpy_tiles(users: np.ndarray, items: np.ndarray, rows: int, cols: int, blas: int) -> None:
        buffer = np.empty(rows * cols, dtype=np.float32)
        with threadpool_limits(blas, "blas"):
            for r0 in range(0, len(users), rows):
                q = users[r0 : r0 + rows]
                for j0 in range(0, len(items), cols):
                    v = items[j0 : j0 + cols]
                    np.matmul(q, v.T, out=buffer[: len(q) * len(v)].reshape(len(q), len(v)))

    n_users, n_items, f = 16_384, args.items, args.factors
    users = (rng.standard_normal((n_users, f)) * 0.1).astype(np.float32)
    items = (rng.standard_normal((n_items, f)) * 0.1).astype(np.float32)

    def ours() -> None:
        with thread_limits(args.threads, blas_threads=1):
            numba_tiles(users, items, 512, 512)

    ours()
    print(f"\n512 x 512 score tiles of {n_users} users x {n_items} items, {f} factors, no selection")
    runners: dict[str, Callable[[], object]] = {
        "numba threads + sgemm": ours,
        f"numpy, {args.threads} BLAS threads": lambda: numpy_tiles(users, items, 512, 512, args.threads),
        "numpy, 1 BLAS thread": lambda: numpy_tiles(users, items, 512, 512, 1),
    }
    results = timed(runners, args.repeats)
    flops = 2.0 * n_users * n_items * f
    report("tiles", results, flops, "numba threads + sgemm")
    return {"results": results, "gflop": flops / 1e9}


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(args: argparse.Namespace) -> None:
    """In a fresh process: peak resident memory added by one call, beside its inputs/outputs."""
    rng = np.random.default_rng(1)
    f, k = args.factors, args.k
    items = (rng.standard_normal((args.memory_items, f)) * 0.1).astype(np.float32)
    users = (rng.standard_normal((args.memory_users, f)) * 0.1).astype(np.float32)
    seen = zipf_interactions(args.memory_users, args.memory_items, args.memory_users * 20, rng)
    ids = np.zeros((args.memory_users, k), dtype=np.int32)
    scores = np.zeros((args.memory_users, k), dtype=np.float32)
    # compile (or load) the kernels on tiny inputs, so the buffers of the measured calls are new
    recommend_all(users[:2], items[:16], k, seen[:2, :16], num_threads=args.threads)
    similar_items_all(items[:16], k, items=np.arange(2), num_threads=args.threads)
    out: dict[str, float] = {}
    calls = {
        "recommend_all": lambda: recommend_all(
            users, items, k, seen, num_threads=args.threads, out=(ids, scores), progress=False
        ),
        "similar_items_all": lambda: similar_items_all(
            items,
            k,
            items=np.arange(args.memory_users),
            num_threads=args.threads,
            out=(ids, scores),
            progress=False,
        ),
    }
    for name, call in calls.items():
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _rss_kb("VmRSS")
        start = time.perf_counter()
        call()
        out[name + "_extra_mb"] = (_rss_kb("VmHWM") - before) / 1024
        out[name + "_seconds"] = time.perf_counter() - start
    out["inputs_mb"] = (items.nbytes + users.nbytes + seen.data.nbytes * 2 + seen.indptr.nbytes) / 2**20
    out["scores_matrix_mb"] = args.memory_users * args.memory_items * 4 / 2**20
    print(json.dumps(out))


def bench_memory(args: argparse.Namespace) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--memory-child",
        f"--memory-items={args.memory_items}",
        f"--memory-users={args.memory_users}",
        f"--factors={args.factors}",
        f"--k={args.k}",
        f"--threads={args.threads}",
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ.copy())
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    full, inputs = result["scores_matrix_mb"], result["inputs_mb"]
    print(
        f"\npeak extra memory, {args.memory_users} rows x {args.memory_items} items "
        f"(a full score matrix would be {full:.0f} MB; inputs {inputs:.0f} MB):"
    )
    for name in ("recommend_all", "similar_items_all"):
        print(f"  {name:<22} {result[name + '_extra_mb']:8.1f} MB  ({result[name + '_seconds']:.1f} s)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--implicit-blas-threads",
        type=int,
        default=1,
        help="BLAS threads under implicit's num_threads=--threads (1, as implicit advises, is its fastest)",
    )
    parser.add_argument(
        "--bare-blocks",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[64, 256, 1024, 4096],
        help="users per block of the bare loop to try; the fastest is used",
    )
    parser.add_argument("--memory-items", type=int, default=1_000_000)
    parser.add_argument("--memory-users", type=int, default=10_000)
    parser.add_argument("--skip-implicit", action="store_true")
    parser.add_argument("--only", choices=("tiles", "recommend", "similar", "memory"), action="append")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import numba

    numba.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return
    versions = f"numpy {np.__version__}, numba {numba.__version__}, implicit {implicit_version()}"
    print(f"machine: {os.cpu_count()} cores; threads {args.threads}; {versions}")
    rng = np.random.default_rng(0)
    parts = args.only or ["tiles", "recommend", "similar", "memory"]
    results: dict[str, object] = {}
    if "tiles" in parts:
        results["tiles"] = bench_tiles(args, rng)
    if "recommend" in parts:
        results["recommend"] = bench_recommend(args, rng)
    if "similar" in parts:
        results["similar"] = bench_similar(args, rng)
    if "memory" in parts:
        results["memory"] = bench_memory(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
