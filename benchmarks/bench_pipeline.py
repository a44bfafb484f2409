"""A full pipeline run (ingest -> build -> train -> evaluate -> gate -> precompute -> publish ->
prune) on synthetic events, per model, each in its own process on a fresh home, then a rerun
without new data (the scheduled case: nothing to do).

    PYTHONPATH=src python benchmarks/bench_pipeline.py [--events 2000000] [--models popular,itemknn,als]
        [--threads 1] [--repeats 1] [--engines local,spark] [--master local[2] | --cluster 2]

``--engines``: each model's run on each engine (alternating); ``spark`` runs on ``--master``,
or with ``--cluster N`` on a standalone cluster of N one-core workers started for the benchmark
(``tests/spark_cluster.py``). Peak RSS is the pipeline's process only (not Spark's JVMs).

Models not registered in this checkout are skipped. Prints one JSON line per run and a
Markdown table: seconds per stage, total, peak RSS of the process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("ingest", "build", "train", "evaluate", "gate", "precompute", "publish", "prune")


def child(args: argparse.Namespace) -> None:
    """One model: a fresh home with the events file in its inbox, a run, a rerun."""
    import numba
    from threadpoolctl import threadpool_limits

    from recforge.cli.engines import open_engine
    from recforge.config import load_config
    from recforge.pipeline import run_pipeline
    from recforge.pipeline.state import Run

    numba.set_num_threads(args.threads)
    home = Path(args.home)
    (home / "inbox").mkdir(parents=True)
    shutil.copy(args.events_file, home / "inbox" / "events.parquet")
    overrides = {"home": str(home), "model": {"name": args.model}, "engine": {"executor_memory": "1g"}}
    config = load_config(environ={}, overrides=overrides)
    with (
        threadpool_limits(limits=args.threads),
        open_engine(config, args.engine, master=args.master, driver_memory="2g") as engine,
    ):
        started = time.perf_counter()
        first = run_pipeline(home, config, engine=engine)
        total = time.perf_counter() - started
        started = time.perf_counter()
        again = run_pipeline(home, config, engine=engine)
        rerun = time.perf_counter() - started
    run = Run.load(first.path)
    built = run.result("build")
    print(
        json.dumps(
            {
                "model": args.model,
                "engine": args.engine,
                "threads": args.threads,
                "events": built["events"],
                "train": built["train"],
                "test_pairs": built["test"]["pairs"],
                "outcome": first.outcome,
                "ndcg": first.ndcg,
                "stages": {s: run.stage(s)["seconds"] for s in STAGES},
                "total": round(total, 2),
                "rerun": round(rerun, 2),
                "rerun_outcome": again.outcome,
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=90.0)
    parser.add_argument("--models", default="popular,itemknn,bpr,als")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--engines", default="local")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--cluster", type=int, default=0, help="start a standalone cluster of N workers")
    parser.add_argument("--engine", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--events-file", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from recforge.data.generate import generate_events, write_events
    from recforge.models.registry import MODELS

    models = [m for m in args.models.split(",") if m in MODELS]
    skipped = [m for m in args.models.split(",") if m not in MODELS]
    engines = args.engines.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp, contextlib.ExitStack() as stack:
        if args.cluster:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.spark_cluster import standalone_cluster

            cluster = stack.enter_context(standalone_cluster(Path(tmp) / "cluster", workers=args.cluster))
            args.master = cluster.url
        events_file = Path(tmp) / "events.parquet"
        started = time.perf_counter()
        table = generate_events(
            users=args.users, items=args.items, events=args.events, days=args.days, seed=0
        )
        write_events(table, events_file)
        del table
        print(f"# generated {args.events:,} events in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        if skipped:
            print(f"# not in this checkout, skipped: {', '.join(skipped)}", file=sys.stderr)
        results = []
        for repeat in range(args.repeats):
            for model, engine in ((m, e) for m in models for e in engines):  # alternating
                home = Path(tmp) / f"home-{model}-{engine}-{repeat}"
                command = [sys.executable, __file__, "--child", "--home", str(home), "--model", model,
                           "--events-file", str(events_file), "--threads", str(args.threads),
                           "--engine", engine, "--master", args.master]  # fmt: skip
                out = subprocess.run(
                    command, check=True, capture_output=True, text=True, env=os.environ
                ).stdout
                result = json.loads(out.strip().splitlines()[-1])
                print(json.dumps(result))
                results.append(result)
                shutil.rmtree(home)
    best: dict[str, dict] = {}
    for result in results:
        key = f"{result['model']} ({result['engine']})"
        if key not in best or result["total"] < best[key]["total"]:
            best[key] = result
    print(
        "\n| model | "
        + " | ".join(STAGES)
        + " | total | rerun (no new data) | NDCG@10 model / popular | peak RSS |"
    )
    print("|---" * (len(STAGES) + 5) + "|")
    for model, r in best.items():
        cells = " | ".join(f"{r['stages'][s]:.1f}" for s in STAGES)
        ndcg = f"{r['ndcg'].get('candidate') or 0:.4f} / {r['ndcg'].get('popular') or 0:.4f}"
        times = f"{r['total']:.1f} s | {r['rerun']:.1f} s"
        print(f"| {model} | {cells} | {times} | {ndcg} | {r['peak_rss_gb']} GB |")


if __name__ == "__main__":
    main()
