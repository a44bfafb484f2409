"""Data-layer benchmark: generator throughput, ingest throughput, build time.

    PYTHONPATH=src python benchmarks/bench_data.py [--events 20000000] [--ingest-events 5000000]

Each stage runs in its own process (so one stage's memory does not inflate the next) and prints
one JSON line: seconds, events per second, and the process's peak resident memory.
Stages: ``generate`` (20M events in memory, then written as Parquet and CSV), ``ingest`` (a CSV
of ``--ingest-events`` into a fresh store, then the same file again: all duplicates),
``load`` (the 20M Parquet file into a store, untimed set-up for ``build``), ``build`` (20M stored
events to ``Interactions``, saved). Best of ``--repeat`` runs where cheap enough.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "2")


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def stage_generate(work: Path, events: int, ingest_events: int) -> dict:
    from recforge.data.generate import generate_events, write_events

    started = time.perf_counter()
    table = generate_events(users=200_000, items=50_000, events=events, days=90, seed=0)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    write_events(table, work / "events.parquet")
    parquet = time.perf_counter() - started
    started = time.perf_counter()
    write_events(table.slice(0, ingest_events), work / "events.csv")
    csv = time.perf_counter() - started
    return {
        "events": events,
        "generate_s": round(generated, 2),
        "generate_events_per_s": round(events / generated),
        "write_parquet_s": round(parquet, 2),
        f"write_csv_{ingest_events}_s": round(csv, 2),
    }


def stage_ingest(work: Path, repeat: int) -> dict:
    from recforge.config import Config
    from recforge.data.ingest import ingest_file
    from recforge.data.store import EventStore

    path = work / "events.csv"
    fresh, again = [], []
    for _ in range(repeat):
        shutil.rmtree(work / "ingest-home", ignore_errors=True)
        store = EventStore(work / "ingest-home")
        started = time.perf_counter()
        report = ingest_file(path, store, Config(), show_progress=False)
        fresh.append(time.perf_counter() - started)
        started = time.perf_counter()
        repeat_report = ingest_file(path, store, Config(), show_progress=False)
        again.append(time.perf_counter() - started)
        assert repeat_report.duplicates == report.accepted
    shutil.rmtree(work / "ingest-home", ignore_errors=True)
    rows = report.rows
    return {
        "csv_rows": rows,
        "csv_mb": round(path.stat().st_size / 1e6, 1),
        "ingest_s": round(min(fresh), 2),
        "ingest_events_per_s": round(rows / min(fresh)),
        "reingest_duplicates_s": round(min(again), 2),
        "reingest_events_per_s": round(rows / min(again)),
    }


def stage_load(work: Path) -> dict:
    from recforge.config import Config
    from recforge.data.ingest import ingest_file
    from recforge.data.store import EventStore

    shutil.rmtree(work / "home", ignore_errors=True)
    started = time.perf_counter()
    report = ingest_file(work / "events.parquet", EventStore(work / "home"), Config(), show_progress=False)
    took = time.perf_counter() - started
    return {
        "parquet_rows": report.rows,
        "ingest_parquet_s": round(took, 2),
        "events_per_s": round(report.rows / took),
    }


def stage_build(work: Path, repeat: int) -> dict:
    from recforge.config import Config
    from recforge.data.build import build_interactions, save_interactions
    from recforge.data.schema import CONTENT_COLUMNS
    from recforge.data.store import EventStore

    store = EventStore(work / "home")
    times, scans = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        store.scan(CONTENT_COLUMNS)
        scans.append(time.perf_counter() - started)
        started = time.perf_counter()
        interactions = build_interactions(store, Config())
        save_interactions(interactions, work / "home")
        times.append(time.perf_counter() - started)
    return {
        "events": interactions.info["events"],
        "shape": list(interactions.shape),
        "nnz": interactions.nnz,
        "scan_s": round(min(scans), 2),
        "build_and_save_s": round(min(times), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--ingest-events", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recforge-bench-data"))
    parser.add_argument("--stage", choices=["generate", "ingest", "load", "build"])
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stage:
        result = {
            "generate": lambda: stage_generate(args.work, args.events, args.ingest_events),
            "ingest": lambda: stage_ingest(args.work, args.repeat),
            "load": lambda: stage_load(args.work),
            "build": lambda: stage_build(args.work, args.repeat),
        }[args.stage]()
        print(json.dumps({"stage": args.stage, **result, "peak_rss_gb": round(peak_gb(), 2)}), flush=True)
        return
    print(json.dumps({"cpus": os.cpu_count(), "python": sys.version.split()[0]}), flush=True)
    for stage in ("generate", "ingest", "load", "build"):
        command = [sys.executable, __file__, "--stage", stage, "--work", str(args.work)]
        command += ["--events", str(args.events), "--ingest-events", str(args.ingest_events)]
        subprocess.run([*command, "--repeat", str(args.repeat)], check=True)
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
