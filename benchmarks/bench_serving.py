"""Serving benchmark: the issue's four targets, server and load generator on 127.0.0.1.

    PYTHONPATH=src:. python benchmarks/bench_serving.py [--work /tmp/recforge-bench-serving]

Set-up (cached in ``--work``): 1M generated events over 20,000 users and a 50,000-item
catalogue; a 64-factor model (``--model``: ``als`` by default, any registered model, or
``toyfactors``, the tests' truncated-SVD stand-in with an implicit-ALS fold-in); its top-200
lists per user (seen items excluded) and top-50 per item (``recommend_all``,
``similar_items_all``), and five more versions for the publish test. The server is ``recforge
serve`` (one uvicorn process, BLAS pinned to one thread) in a subprocess; the load generator is
an open-loop asyncio client in this process: request ``i`` is sent at ``t0 + i / rate`` whatever
the server does, over a pool of keep-alive connections. Latency is from sending to the last byte
of the answer; the ``sched`` columns measure from the scheduled time (they add the generator's
own lateness and any wait for a free connection, so they bound the send-based numbers from
above). Every server is warmed up before a measured load, not measured (:meth:`Server.warm_up`:
the home's files read into the page cache, 300 sequential recommendation requests, the
generator's own garbage collected and frozen).

Stages (``--stages``, all by default):

* ``precomputed``: known users (Zipf ids), ``k=10``, ``--rate`` requests/s for ``--seconds``;
* ``foldin``: 2,000 users (half known, half new) with 1..50 fresh events each (posted first),
  then recommendations for them at ``--foldin-rate``; every answer must say ``foldin``;
* ``intake``: batches of 1,000 events from ``--intake-clients`` concurrent clients for
  ``--intake-seconds``; events/s, and the events are counted in the store afterwards;
* ``publish``: a mixed load (users, similar items) while five versions are published; zero
  failures, and the answers must move to each new version;
* ``appends`` (in process, no server): 1,000 ``EventStore.append`` of 1,000 events each into
  a fresh store; the time per append must stay flat as segments accumulate;
* ``impressions`` (issue 18): the ``precomputed`` load on a server with impressions off
  (``[experiments] impressions = false``) and on, alternating, ``--repeats`` times each (a fresh
  server per run); with them on, every answered ``recommendation_id`` must be in the
  impression store once the server has stopped.

With ``--catalog`` (issue 15) the home also has a catalog: the generated items in ``--categories``
categories (50 by default), ``--sold-out`` of them unavailable (10%), the model fitted with it;
``--users`` / ``--events`` size the data (the issue's set-up: ``--users 200000 --events 2000000``).
Two more stages:

* ``category``: as ``precomputed``, each request with ``&category=<one of the categories>``;
* ``freshness``: two ``recforge serve`` workers on a Redis store and one on the mmap store;
  ``--freshness-items`` times, an item in answers of both servers is marked unavailable with
  ``PATCH`` (alternately through each) while requests keep flowing to both (new connections,
  so both Redis workers answer); the responses started one second or more after the
  acknowledgement must never contain it; also when each server stopped showing it.

``--server-src`` runs the servers from another source tree (e.g. the tree before issue 15,
``git archive <commit> | tar -x -C DIR``) over the same home, for a side-by-side peer;
``--impressions off`` starts the load stages' servers without impressions (a tree from before
issue 18 has none).

Prints one JSON line per stage and a summary table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

N_ITEMS, FACTORS = 50_000, 64
API_KEY = "bench-key"


# set-up ------------------------------------------------------------------------------------
def build_home(work: Path, model_name: str, args: argparse.Namespace) -> Path:
    from tests.serving.factors import ToyFactors

    from recforge._time import parse_time
    from recforge.artifacts import ModelRegistry
    from recforge.catalog import Catalog, CatalogStore
    from recforge.catalog.synthetic import generate_catalog
    from recforge.config import Config
    from recforge.data.build import build_interactions
    from recforge.data.generate import generate_events
    from recforge.data.store import EventStore
    from recforge.lists import Lists
    from recforge.models.registry import model_class
    from recforge.precompute import popular_list
    from recforge.topk import recommend_all, similar_items_all

    name = (
        f"home-{model_name}"
        if args.users == 20_000 and args.events == 1_000_000
        else (f"home-{model_name}-{args.users}u-{args.events}e")
    )
    home = work / (f"{name}-{args.categories}c" if args.catalog else name)
    registry = ModelRegistry(home)
    versions = 1 if args.catalog else 6  # the publish stage needs five more
    if registry.current() is not None and len(registry.list()) >= versions:
        return home
    started = time.perf_counter()
    store = EventStore(home)
    categories = args.categories if args.catalog else None
    if not store.segments():
        store.append(
            generate_events(
                users=args.users, items=N_ITEMS, events=args.events, seed=0, categories=categories
            )
        )
    catalog = None
    if args.catalog:
        table = generate_catalog(N_ITEMS, 0, categories, sold_out=args.sold_out)
        CatalogStore(home).upsert(Catalog.from_records(table.to_pylist()).patches())
        catalog = Catalog.load(home)
    # as of the data's end (2024), as builds before issue 14 were: the same weights in both trees
    interactions = build_interactions(store, Config(), as_of=parse_time(str(store.stats()["last"])))
    cls = ToyFactors if model_name == "toyfactors" else model_class(model_name)
    model = cls(factors=FACTORS)  # a factor model: its versions differ by scaled user factors
    model.fit(interactions, catalog=catalog)
    interactions = interactions.with_items(model.items_)  # the catalog's items without events too
    seen = interactions.matrix
    user_f = np.asarray(model.user_factors_, np.float32)
    item_f = np.asarray(model.item_factors_, np.float32)
    popular = popular_list(interactions, 200)
    info = interactions.info
    window = {"first": info["first"], "last": info["last"], "events": info["events"]}
    rng = np.random.default_rng(1)
    for n in range(versions):  # the served version, then five to publish during a load test
        if n:
            model.user_factors_ = user_f * rng.uniform(0.9, 1.1, FACTORS).astype(np.float32)
        version = registry.create(
            model,
            Lists(
                recommend_all(np.asarray(model.user_factors_, np.float32), item_f, 200, exclude=seen),
                similar_items_all(item_f, 50),
                popular,
            ),
            data_window=window,
        )
        if n == 0:
            registry.publish(version.version)
        print(
            f"  built {version.version} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True
        )
    return home


# server ------------------------------------------------------------------------------------
class Server:
    def __init__(self, home: Path, port: int, *extra: str, tree: Path = REPO, **settings: str) -> None:
        code = "import sys, tests.serving.factors; from recforge.cli.main import main; sys.exit(main(sys.argv[1:]))"  # noqa: E501
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECFORGE_")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(tree / "src"), str(tree)]),
            RECFORGE_API_KEYS=API_KEY,
            OPENBLAS_NUM_THREADS="1",
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            NUMBA_NUM_THREADS="1",
        )
        env.update(settings)
        command = [
            sys.executable,
            "-c",
            code,
            "--home",
            str(home),
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
            *extra,
        ]
        self.process = subprocess.Popen(command, cwd=tree, env=env, start_new_session=True)
        self.home = home
        self.port = port

    def wait_ready(self, timeout: float = 120, path: str = "/readyz") -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("the server did not become ready")

    def warm_up(self, users: list[str], requests: int = 300) -> None:
        """Before a measured load (not measured): every file of the home read once (the page
        cache emptied by whatever ran before would slow only the first run of a series), then
        sequential recommendation requests (the first answers of a process pay for lazy set-up:
        imports, the first writes of the impression log), then the generator's own garbage
        settled (:func:`settle_garbage`)."""
        import httpx

        read_home(self.home)
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}") as client:
            for user in users[:requests]:
                client.get(f"/v1/users/{user}/recommendations", params={"k": 10})
        settle_garbage()

    def cpu_seconds(self) -> float:
        """CPU seconds of the server and its live child processes (the impression writer)."""
        import psutil

        server = psutil.Process(self.process.pid)
        total = 0.0
        for process in (server, *server.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):  # ended meanwhile
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# load generator ----------------------------------------------------------------------------
@dataclass
class Result:
    sent: list[float] = field(default_factory=list)
    scheduled: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        sent = np.asarray(self.sent) * 1e3
        sched = np.asarray(self.scheduled) * 1e3
        pct = lambda a, q: round(float(np.percentile(a, q)), 2) if len(a) else None  # noqa: E731
        return {
            "requests": len(sent),
            "failures": len(self.failures),
            "rps": round(len(sent) / self.seconds, 1) if self.seconds else None,
            "p50_ms": pct(sent, 50),
            "p95_ms": pct(sent, 95),
            "p99_ms": pct(sent, 99),
            "max_ms": pct(sent, 100),
            "sched_p99_ms": pct(sched, 99),
            "sched_max_ms": pct(sched, 100),
            "first_failures": self.failures[:3],
        }


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


def post(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def impressions_setting(on: bool) -> dict[str, str]:
    """The server's environment setting that turns impressions on or off."""
    return {"RECFORGE_EXPERIMENTS__IMPRESSIONS": "true" if on else "false"}


def read_home(home: Path) -> None:
    """Read every file of the home once, into the page cache."""
    for path in home.rglob("*"):
        if path.is_file():
            with path.open("rb") as file:
                while file.read(1 << 20):
                    pass


def settle_garbage() -> None:
    """Collect, then freeze what is left: the generator's own full collections would pause it
    ~100 ms (and skew "sched"), and more so the more the stages before it left behind."""
    gc.collect()
    gc.freeze()


async def open_loop(
    port: int,
    rate: float,
    seconds: float,
    next_request: Callable[[], bytes],
    *,
    connections: int = 64,
    expect: int = 200,
    keep_bodies: int = 0,
) -> Result:
    """Send ``rate * seconds`` requests on schedule, whatever the server does."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(port))
    result = Result()

    async def one(at: float, raw: bytes) -> None:
        conn = await pool.get()
        sent = time.perf_counter()
        try:
            status, body = await conn.request(raw)
            if status != expect:
                result.failures.append(f"{status}: {body[:200]!r}")
            elif len(result.bodies) < keep_bodies:
                result.bodies.append(body)
        except Exception as error:  # a failed request is counted, the connection replaced
            result.failures.append(repr(error))
            conn.close()
            conn = await Connection.open(port)
        finally:
            done = time.perf_counter()
            result.sent.append(done - sent)
            result.scheduled.append(done - at)
            pool.put_nowait(conn)

    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(total):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(at, next_request())))
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - start
    while not pool.empty():
        pool.get_nowait().close()
    return result


async def closed_loop(port: int, clients: int, seconds: float, next_request: Callable[[], bytes]) -> Result:
    """``clients`` connections, each sending its next request when the last is answered."""
    result = Result()
    stop = time.perf_counter() + seconds

    async def client() -> None:
        conn = await Connection.open(port)
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            status, body = await conn.request(next_request())
            result.sent.append(time.perf_counter() - sent)
            result.scheduled.append(time.perf_counter() - sent)
            if status != 202:
                result.failures.append(f"{status}: {body[:200]!r}")
            else:
                result.bodies.append(body)
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


def zipf_sampler(ids: list[str], seed: int, exponent: float = 1.1) -> Callable[[], str]:
    rng = random.Random(seed)
    order = list(ids)
    rng.shuffle(order)
    weights = np.arange(1, len(order) + 1, dtype=np.float64) ** -exponent
    cumulative = np.cumsum(weights / weights.sum())
    draws = np.minimum(
        np.searchsorted(cumulative, np.random.default_rng(seed).random(2_000_000)), len(order) - 1
    )
    position = [0]

    def draw() -> str:
        position[0] = (position[0] + 1) % len(draws)
        return order[draws[position[0]]]

    return draw


def histogram(port: int, route: str) -> dict[float, float]:
    """Cumulative bucket counts of the server's latency histogram for ``route`` (all statuses)."""
    import httpx

    counts: dict[float, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        if line.startswith("recforge_http_request_duration_seconds_bucket{") and f'route="{route}"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            counts[bound] = counts.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def server_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """``histogram_quantile`` (linear within a bucket) of the requests between two snapshots, in ms:
    the server's own view (from routing to the answer, without HTTP parsing and queueing)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return round(lower * 1e3, 2)
            return round((lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)) * 1e3, 2)
        lower, below = bound, count
    return None


def metric(port: int, name: str) -> float:
    import httpx

    total = 0.0
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# stages ------------------------------------------------------------------------------------
def stage_precomputed(port: int, users: list[str], args: argparse.Namespace, keep_bodies: int = 50) -> dict:
    draw = zipf_sampler(users, seed=1)
    route = "/v1/users/{user_id}/recommendations"
    before = histogram(port, route)
    result = asyncio.run(
        open_loop(
            port,
            args.rate,
            args.seconds,
            lambda: get(f"/v1/users/{draw()}/recommendations?k=10"),
            keep_bodies=keep_bodies,
        )
    )
    sources = {json.loads(b)["source"] for b in result.bodies}
    extra = {"bodies": result.bodies} if keep_bodies > 50 else {}
    return {
        **extra,
        "stage": "precomputed",
        "server_p99_ms": server_quantile(before, histogram(port, route), 0.99),
        "rate": args.rate,
        "seconds": args.seconds,
        "sources": sorted(sources),
        **result.summary(),
    }


def stage_category(port: int, users: list[str], categories: list[str], args: argparse.Namespace) -> dict:
    """Known users (Zipf), each request filtered to one category drawn uniformly."""
    draw = zipf_sampler(users, seed=1)
    pick = random.Random(11)
    route = "/v1/users/{user_id}/recommendations"
    before = histogram(port, route)
    result = asyncio.run(
        open_loop(
            port,
            args.rate,
            args.seconds,
            lambda: get(f"/v1/users/{draw()}/recommendations?k=10&category={pick.choice(categories)}"),
            keep_bodies=10**9,
        )
    )
    bodies = [json.loads(b) for b in result.bodies]
    return {
        "stage": "category",
        "server_p99_ms": server_quantile(before, histogram(port, route), 0.99),
        "rate": args.rate,
        "seconds": args.seconds,
        "categories": len(categories),
        "sources": sorted({b["source"] for b in bodies}),
        "answers_with_k_items": f"{sum(len(b['items']) == 10 for b in bodies)}/{len(bodies)}",
        **result.summary(),
    }


def stage_freshness(home: Path, users: list[str], args: argparse.Namespace) -> dict:
    """Two Redis workers and one mmap worker; PATCH {"available": false}, alternately through
    each server; no response started >= 1 s after the acknowledgement may hold the item."""
    import httpx
    from tests.serving.redis_server import free_port, redis_server

    from recforge.artifacts import ModelRegistry

    artifact = ModelRegistry(home).open()
    model = artifact.model
    rng = np.random.default_rng(5)
    with redis_server() as url:
        redis_port, mmap_port = free_port(), free_port()
        servers = [
            Server(home, redis_port, "--workers", "2", "--store", url),
            Server(home, mmap_port),
        ]
        try:
            for server in servers:
                server.wait_ready()
            ports = [redis_port, mmap_port]
            late, checked, vanished = 0, 0, {"redis": [], "mmap": []}
            patched = []
            for trial in range(args.freshness_items):
                row = int(rng.integers(len(model.users_)))
                user = model.users_.id(row)
                answers = [
                    httpx.get(f"http://127.0.0.1:{p}/v1/users/{user}/recommendations?k=10").json()
                    for p in ports
                ]
                common = [
                    e["item_id"]
                    for e in answers[0]["items"]
                    if e["item_id"] in {x["item_id"] for x in answers[1]["items"]}
                ]
                if not common:
                    continue
                item = common[0]
                through = ports[trial % 2]
                response = httpx.patch(
                    f"http://127.0.0.1:{through}/v1/items/{item}",
                    json={"available": False},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )
                acked = time.monotonic()
                assert response.status_code == 200, response.text
                patched.append(item)
                seen_until = {"redis": 0.0, "mmap": 0.0}
                while time.monotonic() - acked < 2.0:
                    for name, port in (("redis", redis_port), ("mmap", mmap_port)):
                        started = time.monotonic()
                        with httpx.Client() as client:  # a new connection: any worker may answer
                            body = client.get(
                                f"http://127.0.0.1:{port}/v1/users/{user}/recommendations?k=10"
                            ).json()
                        holds = item in {e["item_id"] for e in body["items"]}
                        if holds:
                            seen_until[name] = max(seen_until[name], started - acked)
                        if started - acked >= 1.0:
                            checked += 1
                            late += holds
                for name in vanished:
                    vanished[name].append(seen_until[name])
            for item in patched:  # leave the catalog as it was
                httpx.patch(
                    f"http://127.0.0.1:{redis_port}/v1/items/{item}",
                    json={"available": True},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                )
            time.sleep(1.0)
            workers = {}  # the change number each process applied (a gauge per worker pid)
            for name, port in (("redis", redis_port), ("mmap", mmap_port)):
                for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines():
                    if line.startswith(("recforge_catalog_seq{", "recforge_catalog_seq ")):
                        pid = line.split('pid="')[1].split('"')[0] if 'pid="' in line else "single"
                        workers[f"{name}:{pid}"] = int(float(line.rsplit(" ", 1)[1]))
        finally:
            for server in servers:
                server.stop()
    pct = lambda a, q: round(float(np.percentile(a, q)) * 1e3, 1) if a else None  # noqa: E731
    return {
        "stage": "freshness",
        "items_patched": len(patched),
        "responses_started_1s_after_ack": checked,
        "of_them_holding_the_item": late,
        "last_seen_after_ack_ms": {
            name: {"p50": pct(v, 50), "max": pct(v, 100)} for name, v in vanished.items()
        },
        "catalog_seq_per_worker_at_the_end": workers,
        "poll_seconds": 0.25,
    }


def stage_foldin(port: int, users: list[str], items: list[str], args: argparse.Namespace) -> dict:
    rng = random.Random(7)
    targets = rng.sample(users, 1000) + [f"fresh-{n}" for n in range(1000)]
    draw_item = zipf_sampler(items, seed=2)
    now = time.time()
    sizes = {}
    events = []
    for user in targets:
        sizes[user] = rng.randint(1, 50)
        events += [
            {"event_id": f"bench-{user}-{j}", "user_id": user, "item_id": draw_item(), "event_type": "view",
             "timestamp": now}
            for j in range(sizes[user])
        ]  # fmt: skip

    async def post_all() -> None:
        conn = await Connection.open(port)
        for start in range(0, len(events), 1000):
            status, body = await conn.request(
                post("/v1/events", json.dumps(events[start : start + 1000]).encode())
            )
            assert status == 202, body
        conn.close()

    asyncio.run(post_all())
    foldins_before = metric(port, "recforge_foldins_total")
    route = "/v1/users/{user_id}/recommendations"
    before = histogram(port, route)
    result = asyncio.run(
        open_loop(
            port,
            args.foldin_rate,
            args.foldin_seconds,
            lambda: get(f"/v1/users/{rng.choice(targets)}/recommendations?k=10"),
            keep_bodies=10**9,
        )
    )
    sources = {json.loads(b)["source"] for b in result.bodies}
    seconds_sum = metric(port, "recforge_foldin_duration_seconds_sum")
    count = metric(port, "recforge_foldin_duration_seconds_count")
    return {
        "stage": "foldin",
        "rate": args.foldin_rate,
        "seconds": args.foldin_seconds,
        "users": len(targets),
        "fresh_events_per_user": "1..50",
        "sources": sorted(sources),
        "foldins": int(metric(port, "recforge_foldins_total") - foldins_before),
        "server_foldin_mean_ms": round(1e3 * seconds_sum / max(count, 1), 2),
        "server_p99_ms": server_quantile(before, histogram(port, route), 0.99),
        **result.summary(),
    }


def stage_intake(port: int, home: Path, users: list[str], items: list[str], args: argparse.Namespace) -> dict:
    from recforge.data.store import EventStore

    store = EventStore(home)
    before = store.stats()
    draw_user, draw_item = zipf_sampler(users, seed=3), zipf_sampler(items, seed=4)
    counter = [0]
    run = uuid.uuid4().hex[:8]  # ids never stored before, also across runs on the same home
    now = time.time()
    event = {"user_id": "", "item_id": "", "event_type": "view", "timestamp": now, "event_id": "@@"}
    templates = [
        json.dumps([{**event, "user_id": draw_user(), "item_id": draw_item()} for _ in range(1000)]).split(
            '"@@"'
        )
        for _ in range(20)
    ]

    def batch() -> bytes:  # 1,000 events with ids never used before
        counter[0] += 1
        parts = templates[counter[0] % len(templates)]
        ids = (f'"{run}-{counter[0]}-{j}"' for j in range(len(parts) - 1))
        body = parts[0] + "".join(i + part for i, part in zip(ids, parts[1:], strict=True))
        return post("/v1/events", body.encode())

    commits_before = metric(port, "recforge_event_commit_events_count")
    result = asyncio.run(closed_loop(port, args.intake_clients, args.intake_seconds, batch))
    commits = metric(port, "recforge_event_commit_events_count") - commits_before
    accepted = sum(json.loads(b)["accepted"] for b in result.bodies)
    duplicates = sum(json.loads(b)["duplicates"] for b in result.bodies)
    after = store.stats()
    return {
        "stage": "intake",
        "clients": args.intake_clients,
        "batch": 1000,
        "accepted": accepted,
        "duplicates": duplicates,
        "events_per_s": round(accepted / result.seconds),
        "stored_in_store": after["events"] - before["events"],
        "commits": int(commits),
        "events_per_commit": round(accepted / max(commits, 1)),
        "segments_before_after": [before["segments"], after["segments"]],
        **result.summary(),
    }


def stage_publish(
    port: int, home: Path, users: list[str], items: list[str], args: argparse.Namespace
) -> dict:
    from recforge.artifacts import ModelRegistry

    registry = ModelRegistry(home)
    current = registry.current()
    candidates = [v.version for v in registry.list() if v.version != current][-5:]
    draw_user, draw_item = zipf_sampler(users, seed=5), zipf_sampler(items, seed=6)
    requests = [lambda: get(f"/v1/users/{draw_user()}/recommendations?k=10")] * 3 + [
        lambda: get(f"/v1/items/{draw_item()}/similar?k=10")
    ]
    seconds = args.publish_seconds
    route = "/v1/users/{user_id}/recommendations"
    before = histogram(port, route)

    published_at: list[float] = []

    async def run() -> Result:
        load = asyncio.create_task(
            open_loop(port, args.rate, seconds, lambda: random.choice(requests)(), keep_bodies=10**9)
        )
        started = time.perf_counter()
        for version in candidates:
            await asyncio.sleep(seconds / (len(candidates) + 1))
            published_at.append(time.perf_counter() - started)
            await asyncio.to_thread(registry.publish, version)
        return await load

    result = asyncio.run(run())
    # requests are sent at i / rate: split them into the 2 s after each publish and the rest
    sent_at = np.arange(len(result.scheduled)) / args.rate
    near = np.zeros(len(sent_at), dtype=bool)
    for at in published_at:
        near |= (sent_at >= at) & (sent_at < at + 2.0)
    latency = np.asarray(result.scheduled) * 1e3
    seen = [json.loads(b)["model_version"] for b in result.bodies]
    order = list(dict.fromkeys(seen))
    return {
        "stage": "publish",
        "rate": args.rate,
        "seconds": seconds,
        "publishes": len(candidates),
        "versions_answered_in_order": len(order),
        "ends_on_last": order[-1] == candidates[-1] if order else False,
        "reloads": int(metric(port, "recforge_model_reloads_total")),
        "server_p99_ms": server_quantile(before, histogram(port, route), 0.99),
        "sched_p99_ms_2s_after_publishes": round(float(np.percentile(latency[near], 99)), 2),
        "sched_p99_ms_elsewhere": round(float(np.percentile(latency[~near], 99)), 2),
        "sched_max_ms_2s_after_publishes": round(float(latency[near].max()), 2),
        "sched_max_ms_elsewhere": round(float(latency[~near].max()), 2),
        **result.summary(),
    }


def stage_impressions(home: Path, users: list[str], args: argparse.Namespace) -> dict:
    """Precomputed recommendations with impressions off and on, alternating, a fresh server per
    run; p99 of each run, and whether every answered id was recorded."""
    from tests.serving.redis_server import free_port

    from recforge.online.impressions import ImpressionStore

    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for repeat in range(args.repeats):
        for mode in ("off", "on") if repeat % 2 == 0 else ("on", "off"):
            server = Server(home, args.port or free_port(), **impressions_setting(mode == "on"))
            try:
                server.wait_ready()
                server.warm_up(users)
                load = os.getloadavg()[0]
                out = stage_precomputed(server.port, users, args, keep_bodies=10**9)
                out["load_avg_1m_before"] = round(load, 2)
            finally:
                server.stop()
            answered = {json.loads(b)["recommendation_id"] for b in out.pop("bodies")}
            recorded = set(ImpressionStore(home).scan().column("recommendation_id").to_pylist())
            out["recorded"] = len(recorded & answered)
            out["answered"] = len(answered)
            runs[mode].append(out)
            print(
                json.dumps(
                    {
                        "mode": mode,
                        **{
                            k: out[k]
                            for k in (
                                "p99_ms",
                                "server_p99_ms",
                                "rps",
                                "failures",
                                "recorded",
                                "answered",
                                "load_avg_1m_before",
                            )
                        },
                    }
                ),
                flush=True,
            )
    summary = {}
    for mode, outs in runs.items():
        p99 = sorted(o["p99_ms"] for o in outs)
        server = sorted(o["server_p99_ms"] for o in outs if o["server_p99_ms"] is not None)
        summary[mode] = {
            "p99_ms_runs": [o["p99_ms"] for o in outs],
            "p99_ms_best": p99[0],
            "p99_ms_median": p99[len(p99) // 2],
            "server_p99_ms_best": server[0] if server else None,
            "failures": sum(o["failures"] for o in outs),
            "recorded_of_answered": [[o["recorded"], o["answered"]] for o in outs],
        }
    return {
        "stage": "impressions",
        "rate": args.rate,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "off": summary["off"],
        "on": summary["on"],
        "p99_ratio_best": round(summary["on"]["p99_ms_best"] / summary["off"]["p99_ms_best"], 3),
        "p99_ratio_median": round(summary["on"]["p99_ms_median"] / summary["off"]["p99_ms_median"], 3),
    }


def stage_appends(work: Path, count: int = 1000) -> dict:
    """``EventStore.append`` of 1,000-event batches into a fresh store, ``count`` times: the
    time per append must not grow with the number of segments."""
    import shutil

    from recforge.data.generate import generate_events
    from recforge.data.store import EventStore

    home = work / "appends"
    shutil.rmtree(home, ignore_errors=True)
    store = EventStore(home)
    table = generate_events(users=10_000, items=5_000, events=count * 1000, seed=9)
    times = []
    for j in range(count):
        started = time.perf_counter()
        store.append(table.slice(j * 1000, 1000))
        times.append(time.perf_counter() - started)
    t = np.asarray(times) * 1e3
    tenth = max(count // 10, 1)
    out = {
        "stage": "appends",
        "appends": count,
        "segments": len(store.segments()),
        "first_tenth_median_ms": round(float(np.median(t[1:tenth])), 2),
        "last_tenth_median_ms": round(float(np.median(t[-tenth:])), 2),
        "p99_ms": round(float(np.percentile(t[1:], 99)), 2),
    }
    shutil.rmtree(home, ignore_errors=True)
    return out


def stage_foldin_compute(home: Path, items: list[str]) -> dict:
    """The fold-in alone, in process (no HTTP): what a request pays for it."""
    from recforge.artifacts import ModelRegistry

    model = ModelRegistry(home).open().model
    rng = np.random.default_rng(0)
    times = []
    for _ in range(300):
        history = rng.choice(len(model.items_), size=50, replace=False).astype(np.int32)
        started = time.perf_counter()
        model.recommend_for_history(history, np.ones(50, np.float32), k=10)
        times.append(time.perf_counter() - started)
    t = np.asarray(times) * 1e3
    return {
        "stage": "foldin_compute",
        "history": 50,
        "items": len(model.items_),
        "factors": int(model.item_factors_.shape[1]),
        "p50_ms": round(float(np.percentile(t, 50)), 2),
        "p99_ms": round(float(np.percentile(t, 99)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/recforge-bench-serving"))
    parser.add_argument("--model", default="als")
    parser.add_argument("--stages", default="appends,precomputed,foldin,intake,publish")
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--foldin-rate", type=float, default=100.0)
    parser.add_argument("--foldin-seconds", type=float, default=30.0)
    parser.add_argument("--intake-clients", type=int, default=4)
    parser.add_argument("--intake-seconds", type=float, default=20.0)
    parser.add_argument("--publish-seconds", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each mode (impressions stage).")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--catalog", action="store_true", help="Set up a catalog (issue 15).")
    parser.add_argument("--categories", type=int, default=50)
    parser.add_argument("--sold-out", type=float, default=0.1)
    parser.add_argument("--freshness-items", type=int, default=20)
    parser.add_argument("--server-src", type=Path, default=REPO, help="Source tree the servers run from.")
    parser.add_argument(
        "--impressions",
        choices=("on", "off"),
        help="Impressions on or off in the servers of the load stages (default: the home's setting, on).",
    )
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    threadpool_limits(1)
    args.work.mkdir(parents=True, exist_ok=True)
    home = build_home(args.work, args.model, args)
    from tests.serving.redis_server import free_port

    from recforge.artifacts import ModelRegistry
    from recforge.catalog import Catalog

    model = ModelRegistry(home).open().model
    users, items = model.users_.array.to_pylist(), model.items_.array.to_pylist()
    categories = sorted({name for names in Catalog.load(home).categories for name in names})
    stages = args.stages.split(",")
    results = []
    settle_garbage()
    if "appends" in stages:
        results.append(stage_appends(args.work))
        print(json.dumps(results[-1]), flush=True)
        stages.remove("appends")
    if "foldin" in stages:
        results.append(stage_foldin_compute(home, items))
        print(json.dumps(results[-1]), flush=True)
    if "impressions" in stages:
        results.append(stage_impressions(home, users, args))
        print(json.dumps(results[-1]), flush=True)
        stages.remove("impressions")
    if "freshness" in stages:
        results.append(stage_freshness(home, users, args))
        print(json.dumps(results[-1]), flush=True)
        stages.remove("freshness")
    settings = {} if args.impressions is None else impressions_setting(args.impressions == "on")
    for stage in stages:  # a fresh server per stage: no stage inherits another's fresh events
        server = Server(home, args.port or free_port(), tree=args.server_src, **settings)
        try:
            server.wait_ready()
            server.warm_up(users)
            load_before = os.getloadavg()[0]
            cpu_before = server.cpu_seconds()
            if stage == "precomputed":
                out = stage_precomputed(server.port, users, args)
            elif stage == "category":
                out = stage_category(server.port, users, categories, args)
            elif stage == "foldin":
                out = stage_foldin(server.port, users, items, args)
            elif stage == "intake":
                out = stage_intake(server.port, home, users, items, args)
            elif stage == "publish":
                out = stage_publish(server.port, home, users, items, args)
            else:
                raise SystemExit(f"unknown stage {stage}")
            out["server_cpu_s"] = round(server.cpu_seconds() - cpu_before, 1)
            out["server_tree"] = str(args.server_src)
            out["load_avg_1m_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            results.append(out)
            print(json.dumps(out), flush=True)
        finally:
            server.stop()
    print(f"\n{'stage':<14} {'req/s':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7} {'fail':>5}")
    for r in results:
        print(
            f"{r['stage']:<14} {r.get('rps') or '':>7} {r.get('p50_ms') or '':>7} {r.get('p95_ms') or '':>7} "
            f"{r.get('p99_ms') or '':>7} {r.get('max_ms') or '':>7} {r.get('failures', ''):>5}"
        )


if __name__ == "__main__":
    main()
