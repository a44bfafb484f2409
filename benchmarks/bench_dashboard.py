"""Dashboard benchmark: page times on a big home, and the API's p99 with the dashboard mounted.

    PYTHONPATH=src:. python benchmarks/bench_dashboard.py [--work /tmp/recforge-bench-dashboard]

Set-up (cached in ``--work``): 20,000,000 generated events over 200,000 users and a 50,000-item
catalogue, stored as ten segments of 2,000,000 (``generate_events(..., seed=0..9)``); the
pipeline run on them (``recforge pipeline run``: 10 % temporal holdout, ALS with 64 factors and
``--iterations`` iterations, top-100 lists per user, 50 per item), then run again (an
"unchanged" run); and the tuning study of ``--study-trials`` trials made by ``recforge tune``
on a small home (the Tuning page's cost depends on trials, not events), copied in.

Stages (``--stages``):

* ``pages``: ``recforge serve`` (dashboard mounted) on the home with no digest yet: the time
  its background digest of the 20M events takes, then each page ``--requests`` times (Users and
  Items with different users and items, the heaviest among them), server time from the
  ``Server-Timing`` header and wall time at the client; then a restart, which finds the digest
  on disk;
* ``explain``: for 300 users of the published ALS model (their training histories), in
  process with BLAS and numba at one thread: ``recommend_for_history(history, k=10)`` (one
  fold-in) against ``explain_history(history, values, those 10 items, n=3)``, alternating;
* ``p99``: the serving benchmark's precomputed load (open loop, ``--rate`` requests/s for
  ``--seconds``, Zipf users, ``k=10``) against a fresh ``recforge serve`` per run, alternating
  ``serving.dashboard = false`` / ``true`` (idle) / ``true`` with someone viewing a dashboard
  page every second, ``--rounds`` times, the order rotated each round.

Prints one JSON line per measurement and summary tables.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO), str(REPO / "benchmarks")]

import bench_serving as serving_bench  # noqa: E402 - the serving benchmark's server and load

N_USERS, N_ITEMS, SEGMENTS, PER_SEGMENT = 200_000, 50_000, 10, 2_000_000
ADMIN_KEY = "bench-admin"


def config_for(home: Path, iterations: int):
    from recforge.config import load_config

    return load_config(
        environ={},
        overrides={
            "home": str(home),
            "model": {"name": "als", "als": {"factors": 64, "iterations": iterations, "random_state": 0}},
            "pipeline": {"k_users": 100, "k_items": 50},
        },
    )


def build_home(work: Path, iterations: int, study_trials: int) -> Path:
    from recforge.artifacts import ModelRegistry
    from recforge.data.generate import generate_events
    from recforge.data.store import EventStore
    from recforge.pipeline.runner import run_pipeline
    from recforge.pipeline.store_tuning import tune_store

    home = work / "home-200k"
    if ModelRegistry(home).current() is not None and list((home / "tuning").glob("*.db")):
        return home
    started = time.perf_counter()
    store = EventStore(home)
    for seed in range(len(store.segments()), SEGMENTS):
        store.append(generate_events(users=N_USERS, items=N_ITEMS, events=PER_SEGMENT, days=90, seed=seed))
        elapsed = time.perf_counter() - started
        print(f"  segment {seed + 1}/{SEGMENTS} ({elapsed:.0f} s)", file=sys.stderr, flush=True)
    config = config_for(home, iterations)
    for _ in range(2):  # the second run finds nothing new: an "unchanged" run
        result = run_pipeline(home, config)
        print(f"  {result.summary()}", file=sys.stderr, flush=True)
    small = work / "tuning-home"
    if not list((small / "tuning").glob("*.db")):
        shutil.rmtree(small, ignore_errors=True)
        EventStore(small).append(generate_events(users=2000, items=500, events=100_000, days=90, seed=1))
        tuning = config_for(small, iterations)
        tune_store(small, tuning, trials=study_trials, study="als", show_progress=False)
    (home / "tuning").mkdir(exist_ok=True)
    shutil.copy(small / "tuning" / "als.db", home / "tuning" / "als.db")
    print(f"  home built in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return home


def server_env(dashboard: bool) -> dict[str, str]:
    return {"RECFORGE_SERVING__DASHBOARD": "true" if dashboard else "false", "RECFORGE_ADMIN_KEYS": ADMIN_KEY}


def timing(response) -> float:
    """The page's server time (ms) from its ``Server-Timing`` header."""
    parts = dict(p.strip().split(";dur=") for p in response.headers["server-timing"].split(","))
    return float(parts["total"])


def wait_digested(base: str, events: int, timeout: float = 1800) -> float:
    import httpx

    started = time.perf_counter()
    needle = f'id="events-total">{events:,}<'
    while time.perf_counter() - started < timeout:
        page = httpx.get(f"{base}/ui/", timeout=30).text
        if needle in page and "being digested" not in page:
            return time.perf_counter() - started
        time.sleep(1.0)
    raise RuntimeError("the digest did not finish")


def sample_ids(home: Path, count: int) -> tuple[list[str], list[str]]:
    """Users and items to look up: the heaviest of each, then random ones."""
    from recforge.artifacts import ModelRegistry

    model = ModelRegistry(home).open().model
    seen = model.seen_
    rng = random.Random(3)
    activity = np.diff(seen.indptr)
    popularity = np.bincount(seen.indices, minlength=len(model.items_))
    users = [int(np.argmax(activity)), *rng.sample(range(len(model.users_)), count - 1)]
    items = [int(np.argmax(popularity)), *rng.sample(range(len(model.items_)), count - 1)]
    return [model.users_.id(u) for u in users], [model.items_.id(i) for i in items]


def stage_pages(home: Path, args: argparse.Namespace) -> list[dict]:
    import httpx
    from tests.serving.redis_server import free_port

    shutil.rmtree(home / "dashboard", ignore_errors=True)
    users, items = sample_ids(home, args.requests)
    results = []
    for start in ("cold", "restart"):
        server = serving_bench.Server(home, free_port(), **server_env(True))
        try:
            server.wait_ready(timeout=600)
            base = f"http://127.0.0.1:{server.port}"
            digest_seconds = wait_digested(base, SEGMENTS * PER_SEGMENT)
            results.append({"stage": "digest", "start": start, "seconds": round(digest_seconds, 1)})
            print(json.dumps(results[-1]), flush=True)
            paths = {
                "overview": ["/ui/"] * args.requests,
                "pipeline": ["/ui/pipeline"] * args.requests,
                "models": ["/ui/models"] * args.requests,
                "users": [f"/ui/users?user_id={quote(u)}" for u in users],
                "items": [f"/ui/items?item_id={quote(i)}" for i in items],
                "tuning": ["/ui/tuning"] * args.requests,
            }
            with httpx.Client(timeout=60) as client:
                for name, urls in paths.items():
                    client.get(base + urls[0])  # the first render compiles the template
                    server_ms, wall_ms = [], []
                    for url in urls:
                        sent = time.perf_counter()
                        response = client.get(base + url)
                        wall_ms.append((time.perf_counter() - sent) * 1e3)
                        assert response.status_code == 200, (url, response.status_code)
                        server_ms.append(timing(response))
                    heaviest = server_ms[0] if name in ("users", "items") else None
                    results.append(
                        {
                            "stage": "page",
                            "start": start,
                            "page": name,
                            "requests": len(urls),
                            "server_p50_ms": round(statistics.median(server_ms), 1),
                            "server_max_ms": round(max(server_ms), 1),
                            "heaviest_ms": None if heaviest is None else round(heaviest, 1),
                            "wall_p50_ms": round(statistics.median(wall_ms), 1),
                            "wall_max_ms": round(max(wall_ms), 1),
                            "bytes": len(response.content),
                            "load_1m": round(os.getloadavg()[0], 2),
                        }
                    )
                    print(json.dumps(results[-1]), flush=True)
        finally:
            server.stop()
    return results


def stage_explain(home: Path) -> dict:
    from threadpoolctl import threadpool_limits

    from recforge._numba import thread_limits
    from recforge.artifacts import ModelRegistry

    model = ModelRegistry(home).open().model
    seen = model.seen_
    rng = np.random.default_rng(5)
    users = rng.choice(len(model.users_), 300, replace=False)
    fold, explain, lengths, worst = [], [], [], 0.0
    with threadpool_limits(1), thread_limits(1):
        for user in users:
            row = slice(seen.indptr[user], seen.indptr[user + 1])
            history = np.asarray(seen.indices[row], dtype=np.int32)
            values = np.asarray(seen.data[row], dtype=np.float32)
            started = time.perf_counter()
            ids, scores = model.recommend_for_history(history, values, k=10)
            fold.append(time.perf_counter() - started)
            started = time.perf_counter()
            explained = model.explain_history(history, values, ids, n=3)
            explain.append(time.perf_counter() - started)
            lengths.append(len(history))
            full = model.explain_history(history, values, ids[:1], n=len(history))[0]
            worst = max(worst, abs(full.explained - float(scores[0])) / max(abs(float(scores[0])), 1e-9))
            assert len(explained) == len(ids)
    out = {
        "stage": "explain",
        "users": len(users),
        "history_median": int(np.median(lengths)),
        "history_max": int(max(lengths)),
        "foldin_median_ms": round(float(np.median(fold)) * 1e3, 3),
        "explain10_median_ms": round(float(np.median(explain)) * 1e3, 3),
        "ratio_median": round(float(np.median(np.array(explain) / np.array(fold))), 2),
        "max_relative_gap_sum_vs_foldin_score": float(f"{worst:.2e}"),
    }
    print(json.dumps(out), flush=True)
    return out


def stage_p99(home: Path, args: argparse.Namespace) -> list[dict]:
    from tests.serving.redis_server import free_port

    from recforge.artifacts import ModelRegistry

    model = ModelRegistry(home).open().model
    users = model.users_.array.to_pylist()
    view_users, view_items = sample_ids(home, 20)
    del model
    pages = ["/ui/", "/ui/pipeline", "/ui/models", "/ui/tuning"]
    pages += [f"/ui/users?user_id={quote(u)}" for u in view_users]
    pages += [f"/ui/items?item_id={quote(i)}" for i in view_items]
    load = argparse.Namespace(rate=args.rate, seconds=args.seconds)
    results = []
    variants = ["without", "mounted", "mounted+viewer"]
    for round_ in range(args.rounds):
        shift = round_ % len(variants)  # each variant takes each place in the order in turn
        for variant in variants[shift:] + variants[:shift]:
            server = serving_bench.Server(home, free_port(), **server_env(variant != "without"))
            stop = threading.Event()
            viewed: list[float] = []
            try:
                server.wait_ready(timeout=600)
                base = f"http://127.0.0.1:{server.port}"
                if variant != "without":
                    wait_digested(base, SEGMENTS * PER_SEGMENT)
                time.sleep(2.0)

                thread = threading.Thread(target=view, args=(base, pages, round_, stop, viewed), daemon=True)
                if variant == "mounted+viewer":
                    thread.start()
                load_before = os.getloadavg()[0]
                out = serving_bench.stage_precomputed(server.port, users, load)
                stop.set()
                if thread.is_alive():
                    thread.join()
                out.update(
                    stage="p99",
                    variant=variant,
                    round=round_,
                    page_views=len(viewed),
                    page_wall_max_ms=round(max(viewed), 1) if viewed else None,
                    load_avg_1m_before_after=[round(load_before, 2), round(os.getloadavg()[0], 2)],
                )
                results.append(out)
                print(json.dumps(out), flush=True)
            finally:
                stop.set()
                server.stop()
    return results


def view(base: str, pages: list[str], seed: int, stop: threading.Event, wall_ms: list[float]) -> None:
    """Someone looking at the dashboard: a page every second until ``stop``."""
    import httpx

    rng = random.Random(seed)
    with httpx.Client(timeout=60) as client:
        while not stop.wait(1.0):
            sent = time.perf_counter()
            client.get(base + rng.choice(pages))
            wall_ms.append((time.perf_counter() - sent) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/recforge-bench-dashboard"))
    parser.add_argument("--stages", default="explain,pages,p99")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--study-trials", type=int, default=20)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    home = build_home(args.work, args.iterations, args.study_trials)
    stages = args.stages.split(",")
    results = []
    if "explain" in stages:
        results.append(stage_explain(home))
    if "pages" in stages:
        results += stage_pages(home, args)
    if "p99" in stages:
        results += stage_p99(home, args)
    head = f"{'start':<8} {'page':<10} {'server p50':>10} {'server max':>10} {'heaviest':>9} {'wall p50':>9}"
    print("\n" + head)
    for r in results:
        if r["stage"] == "page":
            print(
                f"{r['start']:<8} {r['page']:<10} {r['server_p50_ms']:>10} {r['server_max_ms']:>10} "
                f"{r['heaviest_ms'] or '':>9} {r['wall_p50_ms']:>9}"
            )
    head = f"{'variant':<16} {'round':>5} {'req/s':>7} {'p50':>7} {'p99':>7} {'max':>7} {'server p99':>10}"
    print("\n" + head + f" {'fail':>5}")
    for r in results:
        if r["stage"] == "p99":
            print(
                f"{r['variant']:<16} {r['round']:>5} {r['rps']:>7} {r['p50_ms']:>7} {r['p99_ms']:>7} "
                f"{r['max_ms']:>7} {r['server_p99_ms'] or '':>10} {r['failures']:>5}"
            )


if __name__ == "__main__":
    main()
