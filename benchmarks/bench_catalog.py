"""Catalog benchmark (issue 15): exact filters, new arrivals, catalog writes, freshness from Kafka.

    PYTHONPATH=src:. python benchmarks/bench_catalog.py [--parts exactness,arrivals,upsert,intake,stream]

Parts:

* ``exactness``: on the served model of ``bench_serving.py --catalog`` (built there first, in
  ``--work``), 1,000 random (user, category) pairs for each of precomputed users, fold-in users
  (a history of 1..20 random items) and unknown users (popular): the answer of
  ``recforge.serving.answers.user_answer`` (what the route returns) against a brute-force
  float64 top-k over the available items of the category, seen items excluded, ties by the lower
  index, the cold cap applied (``tests/serving/brute.py``); ``k`` drawn from 1..50;
* ``arrivals``: ml-1m (``../shared/datasets/ml-1m-pairs``: rated pairs and ``movies.dat``),
  10% of the movies held out entirely (all their ratings go to test); ALS fitted on the rest
  with the catalog (genres, year), so the held-out movies get attribute-mapped factors; for each
  test user who rated a held-out movie, only the held-out movies are ranked; NDCG@10 beside a
  random order (mean of 20 shuffles) and "the user's favourite genres" (score = share of the
  user's training history sharing a genre with the movie; ties by lower index);
* ``upsert``: ``recforge items ingest`` of a 100,000-item CSV into an empty home (a process, as
  a user runs it), and the store's upsert alone, in process;
* ``intake``: ``recforge serve`` on a home of its own, ``POST /v1/items`` batches of 10,000
  items from ``--clients`` concurrent clients for ``--seconds``: items/s durable;
* ``stream``: Tansu broker, Redis, ``recforge serve --store redis``, and ``recforge ingest kafka
  --topic events --items-topic items --fresh-store redis``: seconds from producing an event to the
  user's answer being a fold-in, and from producing ``{"available": false}`` to the item leaving
  the answer (``--stream-trials`` each, after the consumer group has joined).

Prints one JSON line per part.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]
DATASETS = Path(os.environ.get("RECFORGE_DATASETS") or REPO.parent / "shared" / "datasets")
API_KEY = "bench-key"


def load() -> dict:
    return {"load_avg_1m": round(os.getloadavg()[0], 2)}


# exactness -----------------------------------------------------------------------------------
def part_exactness(args: argparse.Namespace) -> dict:
    from tests.serving.brute import brute_force

    from recforge.artifacts import ModelRegistry
    from recforge.catalog import CatalogStore
    from recforge.serving.answers import Query, user_answer
    from recforge.serving.fresh import FreshEvent
    from recforge.serving.model import load_served_model
    from recforge.serving.ranking import cold_cap
    from recforge.serving.stores import MmapListStore

    home = args.home
    served = load_served_model(ModelRegistry(home).open(), MmapListStore, catalog=CatalogStore(home))
    state = served.catalog.state
    names = sorted(state.members)
    rng = np.random.default_rng(0)
    out: dict = {"part": "exactness", "home": str(home), "items": state.n_items, "users": len(served.users),
                 "unavailable": int((~state.available).sum()), "categories": len(names)}  # fmt: skip
    for kind in ("precomputed", "foldin", "popular"):
        same = near_tie = wrong = 0
        sources: set[str] = set()
        seconds = []
        for trial in range(args.pairs):
            category = (str(rng.choice(names)),)
            k = int(rng.integers(1, 51))
            cap = cold_cap(k, 0.3)
            query = Query(k, categories=category, cap=cap)
            fresh: list[FreshEvent] = []
            user = -1
            history = None
            if kind == "precomputed":
                user = int(rng.integers(len(served.users)))
                name = served.model.users_.id(user)
            elif kind == "foldin":
                name = f"bench-fresh-{trial}"
                picked = rng.choice(state.n_model, int(rng.integers(1, 21)), replace=False)
                fresh = [
                    FreshEvent(f"{name}-{j}", i, 1.0, 0) for j, i in enumerate(served.items.names(picked))
                ]
                history = (np.sort(picked).astype(np.int32), np.ones(len(picked), np.float32))
            else:
                name = f"bench-stranger-{trial}"
            started = time.perf_counter()
            answer = user_answer(served, state, name, query, fresh)
            seconds.append(time.perf_counter() - started)
            sources.add(answer.source)
            expected = brute_force(served, state, k, cap, category, user=user, history=history)
            if np.array_equal(answer.ids, expected):
                same += 1
            elif _near_tie(served, state, answer.ids, expected, user, history):
                near_tie += 1
            else:
                wrong += 1
        out[kind] = {
            "pairs": args.pairs, "identical": same, "differ_only_by_float32_near_ties": near_tie,
            "wrong": wrong, "sources": sorted(sources),
            "answer_p50_ms": round(float(np.percentile(seconds, 50)) * 1e3, 3),
            "answer_p99_ms": round(float(np.percentile(seconds, 99)) * 1e3, 3),
        }  # fmt: skip
    return {**out, **load()}


def _near_tie(served, state, got, expected, user, history) -> bool:
    """Whether two answers of a factor score differ only where their float64 scores, position by
    position, agree to float32 rounding (1e-6 relative): the order of such near-ties is not
    defined by float32 arithmetic."""
    if len(got) != len(expected) or (user < 0 and history is None):
        return False
    model = served.model
    factors = np.asarray(model.item_factors_, np.float64)
    if state.extra_factors is not None and len(state.extra_factors):
        factors = np.vstack([factors, np.asarray(state.extra_factors, np.float64)])
    vector = np.asarray(model.user_factors_[user] if history is None else model.fold_in(*history), np.float64)
    return bool(np.allclose(factors[got] @ vector, factors[expected] @ vector, rtol=1e-6, atol=1e-7))


# new arrivals ----------------------------------------------------------------------------------
def part_arrivals(args: argparse.Namespace) -> dict:
    import pyarrow.parquet as pq
    import scipy.sparse as sp

    from recforge import ALS, Catalog, Interactions
    from recforge.data.vocabulary import Vocabulary
    from recforge.evaluation.metrics import metrics_at_k

    folder = DATASETS / "ml-1m-pairs"
    with gzip.open(folder / "ratings.parquet.gz") as handle:
        pairs = pq.read_table(io.BytesIO(handle.read()))
    catalog = Catalog.read(folder / "movies.dat.gz")
    users = Vocabulary.from_values(pairs.column("userID"))
    movies = Vocabulary.from_values(pairs.column("movieID"))
    u = users.lookup(pairs.column("userID"))
    i = movies.lookup(pairs.column("movieID"))
    rng = np.random.default_rng(args.seed)
    held = np.zeros(len(movies), dtype=bool)
    held[rng.choice(len(movies), len(movies) // 10, replace=False)] = True
    train_rows = ~held[i]
    shape = (len(users), len(movies))
    full = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=shape)
    train = sp.csr_matrix(
        (np.ones(int(train_rows.sum()), np.float32), (u[train_rows], i[train_rows])), shape=shape
    )
    # the held-out movies have no column entries: the model sees them only through the catalog
    interactions = Interactions.from_csr(train, users, movies)
    started = time.perf_counter()
    model = ALS(factors=args.factors, regularization=args.regularization, alpha=args.alpha,
                iterations=15, random_state=0).fit(interactions, catalog=catalog)  # fmt: skip
    fit_s = time.perf_counter() - started
    cold = np.flatnonzero(held)
    assert set(model.cold_items_.tolist()) >= set(cold.tolist())
    test = full[:, cold]
    evaluated = np.flatnonzero(np.diff(test.indptr) > 0)
    relevant = test[evaluated]
    k = 10

    def ndcg(local: np.ndarray) -> float:  # local: positions into ``cold``, [users, k]
        return float(metrics_at_k(local, relevant, k, ["ndcg"])["ndcg"])

    ids, _ = model.recommend(evaluated.astype(np.int32), k, items=cold.astype(np.int32))
    position = np.full(len(movies), -1)
    position[cold] = np.arange(len(cold))
    mapped = ndcg(np.where(ids >= 0, position[np.maximum(ids, 0)], -1))
    shuffles = [
        ndcg(np.stack([rng.permutation(len(cold))[:k] for _ in evaluated])) for _ in range(args.shuffles)
    ]
    genres = sorted({g for names in catalog.categories for g in names})
    movie_row = movies.lookup(list(catalog.item_ids))
    g = np.zeros((len(movies), len(genres)), dtype=np.float32)
    for row, names in zip(movie_row.tolist(), catalog.categories, strict=True):
        if row >= 0:
            g[row, [genres.index(n) for n in names]] = 1.0
    shares = (g @ g[cold].T > 0).astype(np.float32)  # movie x held-out: share a genre
    history = train[evaluated]
    score = np.asarray(history @ shares) / np.maximum(np.diff(history.indptr), 1)[:, None]
    order = np.lexsort((np.broadcast_to(np.arange(len(cold)), score.shape), -score), axis=1)[:, :k]
    genre = ndcg(order)
    return {
        "part": "arrivals",
        "movies": len(movies),
        "held_out_movies": int(held.sum()),
        "test_users": len(evaluated),
        "test_pairs": int(relevant.nnz),
        "model": f"ALS(factors={args.factors}, regularization={args.regularization}, alpha={args.alpha}, "
        "iterations=15)",
        "cold_map_penalty": model.cold_map_.penalty,
        "fit_s": round(fit_s, 1),
        "ndcg@10_mapped_factors": round(mapped, 4),
        "ndcg@10_random_mean": round(float(np.mean(shuffles)), 4),
        "ndcg@10_random_sd": round(float(np.std(shuffles)), 4),
        "ndcg@10_favourite_genres": round(genre, 4),
        "ratio_to_random": round(mapped / float(np.mean(shuffles)), 2),
        **load(),
    }


# catalog writes ------------------------------------------------------------------------------
def part_upsert(args: argparse.Namespace) -> dict:
    import pyarrow.csv as pcsv

    from recforge.catalog import Catalog, CatalogStore
    from recforge.catalog.synthetic import generate_catalog

    work = Path(tempfile.mkdtemp(prefix="rf-upsert-"))
    path = work / "items.csv"
    pcsv.write_csv(generate_catalog(args.items, seed=3, categories=50), path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    runs = []
    for attempt in range(args.repeats):
        home = work / f"home{attempt}"
        started = time.perf_counter()
        command = [
            sys.executable,
            "-m",
            "recforge",
            "--home",
            str(home),
            "items",
            "ingest",
            "--json",
            str(path),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        runs.append({"wall_s": round(time.perf_counter() - started, 2), **json.loads(done.stdout)})
    patches = Catalog.read(path).patches()
    alone = []
    for attempt in range(args.repeats):
        store = CatalogStore(work / f"alone{attempt}")
        started = time.perf_counter()
        store.upsert(patches)
        alone.append(time.perf_counter() - started)
    again = CatalogStore(work / "alone0")
    started = time.perf_counter()
    again.upsert(patches)  # all existing: the update path
    update_s = time.perf_counter() - started
    return {
        "part": "upsert",
        "items": args.items,
        "cli_runs": [{k: r[k] for k in ("wall_s", "seconds", "upserted", "rejected")} for r in runs],
        "cli_best_wall_s": min(r["wall_s"] for r in runs),
        "store_upsert_new_s": [round(t, 2) for t in alone],
        "store_upsert_existing_s": round(update_s, 2),
        **load(),
    }


def part_intake(args: argparse.Namespace) -> dict:
    from bench_serving import Server, closed_loop, post
    from tests.serving.redis_server import free_port

    from recforge.catalog import CatalogStore

    home = Path(tempfile.mkdtemp(prefix="rf-intake-"))  # its own home: a catalog, no model needed
    before = CatalogStore(home).stats()["items"]
    server = Server(home, free_port())
    run = os.urandom(4).hex()
    counter = [0]

    def batch() -> bytes:
        counter[0] += 1
        body = json.dumps(
            [
                {
                    "item_id": f"http-{run}-{counter[0]}-{j}",
                    "categories": [f"c{j % 50}"],
                    "available": j % 10 != 0,
                    "attributes": {"title": f"Item {j}", "price": j % 500 + 0.99},
                }
                for j in range(10_000)
            ]
        )
        return post("/v1/items", body.encode())

    try:
        server.wait_ready(path="/healthz")
        result = asyncio.run(closed_loop(server.port, args.clients, args.seconds, batch))
    finally:
        server.stop()
    accepted = sum(json.loads(b)["accepted"] for b in result.bodies)
    after = CatalogStore(home).stats()["items"]
    summary = result.summary()
    return {
        "part": "intake",
        "clients": args.clients,
        "batch": 10_000,
        "batches": len(result.bodies),
        "accepted": accepted,
        "items_per_s": round(accepted / result.seconds),
        "new_in_store_afterwards": after - before,
        "batch_p50_ms": summary["p50_ms"],
        "batch_p99_ms": summary["p99_ms"],
        "failures": summary["failures"],
        **load(),
    }


# freshness from Kafka --------------------------------------------------------------------------
def part_stream(args: argparse.Namespace) -> dict:
    import httpx
    from bench_serving import Server
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from tests.serving.redis_server import free_port, redis_server
    from tests.tansu import tansu_broker

    from recforge.artifacts import ModelRegistry
    from recforge.catalog import CatalogStore

    model = ModelRegistry(args.home).open().model
    rng = np.random.default_rng(4)
    fresh_time = "2025-06-01T12:00:00Z"
    with tansu_broker() as bootstrap, redis_server() as url:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic("events", 1), NewTopic("items", 1)]).values():
            future.result(30)
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})

        def send(topic: str, record: dict) -> float:
            producer.produce(topic, json.dumps(record).encode())
            producer.flush(10)
            return time.monotonic()

        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        command = [sys.executable, "-m", "recforge", "--home", str(args.home), "ingest", "kafka"]
        command += ["--bootstrap", bootstrap, "--topic", "events", "--items-topic", "items"]
        command += ["--group", f"bench-{os.getpid()}", "--fresh-store", url, "--max-batch-wait-s", "0.1"]
        consumer = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        server = Server(args.home, free_port(), "--store", url)
        base = f"http://127.0.0.1:{server.port}"
        client = httpx.Client(timeout=10)

        def answer(user: str, k: int = 10) -> dict:
            return client.get(f"{base}/v1/users/{user}/recommendations?k={k}").json()

        def until(check, timeout: float = 120) -> float:
            started = time.monotonic()
            while not check():
                if time.monotonic() - started > timeout:
                    raise TimeoutError
                time.sleep(0.01)
            return time.monotonic()

        event_s, item_s, patched = [], [], []
        try:
            server.wait_ready()
            warm = model.items_.id(0)
            send(
                "events", {"user_id": "warm", "item_id": warm, "event_type": "view", "timestamp": fresh_time}
            )
            store = CatalogStore(args.home)
            seq = store.seq()
            send("items", {"item_id": warm, "available": True})  # changes nothing but the change number
            until(lambda: answer("warm")["source"] == "foldin")
            until(lambda: store.seq() > seq)
            for trial in range(args.stream_trials):
                user = f"stream-{os.getpid()}-{trial}"
                item = model.items_.id(int(rng.integers(len(model.items_))))
                sent = send("events", {"user_id": user, "item_id": item, "event_type": "like",
                                       "timestamp": fresh_time})  # fmt: skip
                event_s.append(until(lambda u=user: answer(u)["source"] == "foldin", 30) - sent)
                known = model.users_.id(int(rng.integers(len(model.users_))))
                top = answer(known, 1)["items"][0]["item_id"]
                sent = send("items", {"item_id": top, "available": False})
                patched.append(top)
                item_s.append(
                    until(lambda u=known, t=top: t not in {e["item_id"] for e in answer(u, 20)["items"]}, 30)
                    - sent
                )
            for top in patched:
                send("items", {"item_id": top, "available": True})
            time.sleep(1)
        finally:
            server.stop()
            consumer.terminate()
            consumer.wait(60)
            client.close()
    pct = lambda a, q: round(float(np.percentile(a, q)), 3)  # noqa: E731
    return {
        "part": "stream",
        "trials": args.stream_trials,
        "event_to_foldin_s": {"p50": pct(event_s, 50), "max": pct(event_s, 100)},
        "sold_out_to_gone_s": {"p50": pct(item_s, 50), "max": pct(item_s, 100)},
        "settings": "max_batch_wait_s 0.1, catalog poll 0.25 s, one server on Redis",
        **load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="exactness,arrivals,upsert,intake,stream")
    parser.add_argument("--work", type=Path, default=Path("/tmp/recforge-bench-serving"))
    parser.add_argument("--home", type=Path, default=None, help="Default: bench_serving.py's --catalog home.")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--stream-trials", type=int, default=20)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--regularization", type=float, default=0.01)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--shuffles", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    if args.home is None:
        args.home = args.work / "home-als-200000u-2000000e-50c"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    parts = {"exactness": part_exactness, "arrivals": part_arrivals, "upsert": part_upsert,
             "intake": part_intake, "stream": part_stream}  # fmt: skip
    for name in args.parts.split(","):
        print(json.dumps(parts[name](args)), flush=True)


if __name__ == "__main__":
    main()
