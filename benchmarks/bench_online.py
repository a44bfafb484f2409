"""Online evaluation benchmark (issue 18): the simulator's A/B and A/A experiments, attribution.

    PYTHONPATH=src:. python benchmarks/bench_online.py [--work /tmp/recforge-bench-online]

Set-up (cached in ``--work``): ``generate_with_tastes(users=10_000, items=2_000,
events=1_000_000, seed=0)`` (the generator's defaults) into an event store; ``ALS()`` (64
factors, the defaults) and ``Popular()`` fitted on all of it, each stored as a version with its
precomputed lists (100 per user, 50 per item, 200 popular); the Popular version published. The
server is ``recforge serve`` (one uvicorn process, BLAS and numba pinned to one thread) on
127.0.0.1; the simulator (:mod:`recforge.online.simulator`) runs in this process.

Stages (``--stages``, all by default):

* ``ab``: for each seed of ``--seeds``, an experiment with the Popular version as control and
  ALS as treatment (share 0.5) and ``--requests`` simulated requests in chunks of ``--chunk``;
  after each chunk the experiment's report (the default ``[experiments]`` settings: deciding
  metric ``convert``, alpha 0.01, 200 users per arm): when the verdict first names ALS, and
  whether it still does at the end;
* ``aa``: an experiment with the ALS version in both arms and ``--requests`` requests; its own
  verdict, then :func:`~recforge.online.experiments.aa_test` (100 random re-splits of the
  recorded users) on its impressions, for both metrics;
* ``attribution``: the vectorised attribution against the one-event-at-a-time reference on the
  tests' constructed log (20,000 impressions, 100,000 events), and alone on 200,000
  impressions and 1,000,000 events.

Prints one JSON line per measurement and a summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from benchmarks.bench_serving import API_KEY, Server  # noqa: E402

N_USERS, N_ITEMS, N_EVENTS = 10_000, 2_000, 1_000_000


def build_home(work: Path) -> tuple[Path, str, str]:
    """The home, and the ALS and Popular versions (cached)."""
    from recforge.artifacts import ModelRegistry
    from recforge.config import Config
    from recforge.data.build import build_interactions
    from recforge.data.generate import generate_with_tastes
    from recforge.data.store import EventStore
    from recforge.models import ALS, Popular
    from recforge.precompute import precompute

    home = work / "home"
    marker = work / "versions.json"
    if marker.exists():
        saved = json.loads(marker.read_text())
        return home, saved["als"], saved["popular"]
    started = time.perf_counter()
    events, tastes = generate_with_tastes(users=N_USERS, items=N_ITEMS, events=N_EVENTS, seed=0)
    EventStore(home).append(events)
    tastes.save(work / "events.tastes.npz")
    interactions = build_interactions(EventStore(home), Config())
    info = interactions.info
    window = {"first": info["first"], "last": info["last"], "events": info["events"]}
    registry = ModelRegistry(home)
    names = {}
    for key, model in (("als", ALS(random_state=0)), ("popular", Popular())):
        model.fit(interactions)
        lists = precompute(model, interactions, k_users=100, k_items=50, k_popular=200)
        names[key] = registry.create(model, lists, data_window=window).version
        print(
            f"  fitted {key}: {names[key]} ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    registry.publish(names["popular"])
    marker.write_text(json.dumps(names))
    return home, names["als"], names["popular"]


def wait_for_experiment(url: str, name: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/v1/users/u0/recommendations").json()
        if (answer.get("experiment") or {}).get("name") == name:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the server did not pick up experiment {name}")


def stage_ab(home: Path, url: str, als: str, popular: str, seed: int, args: argparse.Namespace) -> dict:
    from recforge.config import load_config
    from recforge.online.experiments import ExperimentBook, experiment_report
    from recforge.online.simulator import load_tastes, simulate

    config = load_config(environ={}, overrides={"home": str(home)})
    tastes = load_tastes(args.work / "events.tastes.npz")
    name = f"ab-s{seed}-{secrets.token_hex(3)}"
    book = ExperimentBook(home)
    book.start(name, popular, als, 0.5)
    wait_for_experiment(url, name)
    checkpoints = []
    done = 0
    started = time.perf_counter()
    report_seconds = 0.0
    try:
        while done < args.requests:
            count = min(args.chunk, args.requests - done)
            run = simulate(
                url, tastes, count, seed=seed, first=done, api_key=API_KEY, concurrency=args.concurrency
            )
            if run.failures:
                raise RuntimeError(f"simulated requests failed: {run.failures[:3]}")
            done += count
            clock = time.perf_counter()
            report = experiment_report(home, config, name)
            report_seconds = time.perf_counter() - clock
            arms, comparisons = report["arms"], report["comparisons"]
            checkpoints.append(
                {
                    "requests": done,
                    "users": [arms["control"]["users"], arms["treatment"]["users"]],
                    "convert_rate": [arms["control"]["convert_rate"], arms["treatment"]["convert_rate"]],
                    "convert_p": comparisons["convert"]["p_value"],
                    "click_rate": [arms["control"]["click_rate"], arms["treatment"]["click_rate"]],
                    "click_p": comparisons["click"]["p_value"],
                    "winner": report["winner"],
                }
            )
            print(json.dumps({"seed": seed, **checkpoints[-1]}), flush=True)
    finally:
        book.stop(name)
    wins = [c["requests"] for c in checkpoints if c["winner"] == "treatment"]
    last = checkpoints[-1]
    return {
        "stage": "ab",
        "seed": seed,
        "experiment": name,
        "requests": done,
        "first_als_verdict_at": wins[0] if wins else None,
        "als_wins_at_end": last["winner"] == "treatment",
        "control_wins_ever": any(c["winner"] == "control" for c in checkpoints),
        "end": last,
        "seconds": round(time.perf_counter() - started, 1),
        "last_report_seconds": round(report_seconds, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def stage_aa(home: Path, url: str, als: str, args: argparse.Namespace) -> dict:
    from recforge.config import load_config
    from recforge.online.experiments import ExperimentBook, aa_test, experiment_report
    from recforge.online.simulator import load_tastes, simulate

    config = load_config(environ={}, overrides={"home": str(home)})
    tastes = load_tastes(args.work / "events.tastes.npz")
    name = f"aa-{secrets.token_hex(3)}"
    book = ExperimentBook(home)
    book.start(name, als, als, 0.5)
    wait_for_experiment(url, name)
    try:
        run = simulate(url, tastes, args.requests, seed=1000, api_key=API_KEY, concurrency=args.concurrency)
    finally:
        book.stop(name)
    live = experiment_report(home, config, name)
    out = {
        "stage": "aa",
        "experiment": name,
        "requests": run.requests,
        "failures": len(run.failures),
        "live_verdict": live["verdict"],
        "live_p": {m: c["p_value"] for m, c in live["comparisons"].items()},
        "users": [live["arms"][arm]["users"] for arm in ("control", "treatment")],
    }
    for metric in ("convert", "click"):
        settings = dataclasses.replace(config.experiments, metric=metric)
        clock = time.perf_counter()
        result = aa_test(
            home, dataclasses.replace(config, experiments=settings), experiment=name, repetitions=100
        )
        out[f"aa_{metric}"] = {
            "winners_of_100": result["winners"],
            "hit_rate": round(result["hit_rate"], 4),
            "users": result["users"],
            "seconds": round(time.perf_counter() - clock, 2),
        }
    print(json.dumps(out), flush=True)
    return out


def stage_attribution() -> dict:
    import numpy as np
    from tests.online.test_attribution import WINDOW, constructed_log

    from recforge.online.attribution import attribute, attribute_reference

    shown, events = constructed_log(0)
    clock = time.perf_counter()
    fast = attribute(shown, events, WINDOW)
    fast_s = time.perf_counter() - clock
    clock = time.perf_counter()
    slow = attribute_reference(shown, events, WINDOW)
    slow_s = time.perf_counter() - clock
    exact = bool(
        np.array_equal(fast.impression, slow.impression)
        and np.array_equal(fast.position, slow.position)
        and np.array_equal(fast.named, slow.named)
    )
    big_shown, big_events = constructed_log(1, n_impressions=200_000, n_events=1_000_000)
    times = []
    for _ in range(3):
        clock = time.perf_counter()
        attribute(big_shown, big_events, WINDOW)
        times.append(time.perf_counter() - clock)
    out = {
        "stage": "attribution",
        "events": events.num_rows,
        "impressions": shown.num_rows,
        "exact": exact,
        "attributed": round(float(fast.attributed.mean()), 3),
        "vectorised_s": round(fast_s, 3),
        "reference_s": round(slow_s, 2),
        "big_events": big_events.num_rows,
        "big_impressions": big_shown.num_rows,
        "big_best_s": round(min(times), 2),
        "big_events_per_s": round(big_events.num_rows / min(times)),
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/recforge-bench-online"))
    parser.add_argument("--stages", default="attribution,ab,aa")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    from tests.serving.redis_server import free_port
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    args.work.mkdir(parents=True, exist_ok=True)
    stages = args.stages.split(",")
    results = []
    if "attribution" in stages:
        results.append(stage_attribution())
    if {"ab", "aa"} & set(stages):
        home, als, popular = build_home(args.work)
        server = Server(home, free_port(), RECFORGE_SERVING__RELOAD_POLL_SECONDS="0.2")
        try:
            server.wait_ready()
            url = f"http://127.0.0.1:{server.port}"
            if "ab" in stages:
                for seed in (int(s) for s in args.seeds.split(",")):
                    results.append(stage_ab(home, url, als, popular, seed, args))
                    print(json.dumps(results[-1]), flush=True)
            if "aa" in stages:
                results.append(stage_aa(home, url, als, args))
        finally:
            server.stop()
    print("\nsummary")
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
