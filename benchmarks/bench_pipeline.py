"""A full pipeline run (ingest -> build -> train -> evaluate -> gate -> precompute -> publish ->
prune) on synthetic events, per model, each in its own process on a fresh home, then a rerun
without new data (the scheduled case: nothing to do).

    PYTHONPATH=src python benchmarks/bench_pipeline.py [--events 2000000] [--models popular,itemknn,als]
        [--threads 1] [--repeats 1]

Models not registered in this checkout are skipped. Prints one JSON line per run and a
Markdown table: seconds per stage, total, peak RSS of the process.
"""

from __future__ import annotations

import argparse
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

    from recforge.config import load_config
    from recforge.pipeline import run_pipeline
    from recforge.pipeline.state import Run

    numba.set_num_threads(args.threads)
    home = Path(args.home)
    (home / "inbox").mkdir(parents=True)
    shutil.copy(args.events_file, home / "inbox" / "events.parquet")
    config = load_config(environ={}, overrides={"home": str(home), "model": {"name": args.model}})
    with threadpool_limits(limits=args.threads):
        started = time.perf_counter()
        first = run_pipeline(home, config)
        total = time.perf_counter() - started
        started = time.perf_counter()
        again = run_pipeline(home, config)
        rerun = time.perf_counter() - started
    run = Run.load(first.path)
    built = run.result("build")
    print(
        json.dumps(
            {
                "model": args.model,
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
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
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
            for model in models:  # models alternate within each repeat
                home = Path(tmp) / f"home-{model}-{repeat}"
                command = [sys.executable, __file__, "--child", "--home", str(home), "--model", model,
                           "--events-file", str(events_file), "--threads", str(args.threads)]  # fmt: skip
                out = subprocess.run(
                    command, check=True, capture_output=True, text=True, env=os.environ
                ).stdout
                result = json.loads(out.strip().splitlines()[-1])
                print(json.dumps(result))
                results.append(result)
                shutil.rmtree(home)
    best: dict[str, dict] = {}
    for result in results:
        if result["model"] not in best or result["total"] < best[result["model"]]["total"]:
            best[result["model"]] = result
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
