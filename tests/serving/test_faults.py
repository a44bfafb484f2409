"""Faults on purpose (issue 14), serving side: Redis stopped and restarted under a load."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from recforge.serving import create_app
from tests.serving.conftest import API_KEY, make_config
from tests.serving.redis_server import free_port

pytestmark = pytest.mark.redis
AUTH = {"Authorization": f"Bearer {API_KEY}"}


class Redis:
    """A ``redis-server`` (no persistence) on a fixed loopback port, to stop and start again."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def test_redis_stopped_and_restarted_under_load_falls_back_and_recovers(home):
    redis = Redis()
    redis.start()
    config = make_config(
        home, store=redis.url, redis_prefix=f"t{uuid.uuid4().hex[:6]}", reload_poll_seconds=0.1
    )
    statuses: Counter[int] = Counter()
    sources: dict[str, Counter[str]] = {phase: Counter() for phase in ("up", "down", "back")}
    phase = ["up"]
    stop = threading.Event()
    try:
        with TestClient(create_app(config)) as client:

            def load(worker: int) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    user = f"u{(worker * 7 + n) % 50}"
                    answer = client.get(f"/v1/users/{user}/recommendations")
                    statuses[answer.status_code] += 1
                    if answer.status_code == 200:
                        sources[phase[0]][answer.json()["source"]] += 1
                    statuses[client.get(f"/v1/items/i{n % 40}/similar").status_code] += 1
                    if n % 10 == 0:
                        event = {"user_id": f"load{worker}", "item_id": "i1", "event_type": "view",
                                 "timestamp": "2025-06-01", "event_id": f"w{worker}-{n}"}  # fmt: skip
                        statuses[client.post("/v1/events", json=[event], headers=AUTH).status_code] += 1

            threads = [threading.Thread(target=load, args=(w,)) for w in range(3)]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            phase[0] = "down"
            redis.stop()
            time.sleep(2.0)
            redis.start()  # empty: the lists are gone and must be loaded again
            deadline = time.monotonic() + 20
            while client.get("/v1/users/u1/recommendations").json()["source"] != "precomputed":
                assert time.monotonic() < deadline, "the lists never came back"
                time.sleep(0.1)
            phase[0] = "back"
            time.sleep(1.0)
            stop.set()
            for thread in threads:
                thread.join()
    finally:
        stop.set()
        redis.stop()
    assert statuses and all(status < 500 for status in statuses), statuses
    assert set(statuses) <= {200, 202}, statuses
    assert sources["up"]["precomputed"] > 0
    assert sources["down"]["popular"] > 0  # fell back
    assert sources["back"]["precomputed"] > 0 and sources["back"]["popular"] <= sources["back"]["precomputed"]
