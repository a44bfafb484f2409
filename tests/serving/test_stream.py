"""Fresh from the stream (issue 15): an event produced to Kafka changes its user's answer, and an
item sold out through the items topic leaves the answers, with ``recforge ingest kafka`` feeding
the Redis fresh-event store and the catalog, against Tansu and a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from recforge.serving import create_app
from tests.conftest import REPO
from tests.serving.conftest import make_config
from tests.serving.redis_server import redis_server

kafka = pytest.importorskip("confluent_kafka")
pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
FRESH = "2025-06-01T12:00:00Z"


def wait_until(check, timeout: float) -> float:
    """Seconds until ``check()`` holds (polled every 20 ms); fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def test_events_and_item_changes_from_kafka_reach_the_answers(kafka_broker, home, tmp_path):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_broker})
    for future in admin.create_topics([NewTopic("events", 1), NewTopic("items", 1)]).values():
        future.result(30)
    producer = kafka.Producer({"bootstrap.servers": kafka_broker, "linger.ms": 0})

    def send(topic: str, record: dict) -> None:
        producer.produce(topic, json.dumps(record).encode())
        assert producer.flush(10) == 0

    with redis_server() as url:
        config = make_config(home, store=url)
        topics = ["--topic", "events", "--items-topic", "items", "--group", "stream", "--fresh-store", url]
        options = ["--max-batch-wait-s", "0.1", "--session-timeout-ms", "6000"]
        command = [sys.executable, "-m", "recforge", "--home", str(home), "ingest", "kafka"]
        command += ["--bootstrap", kafka_broker, *topics, *options]
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        consumer = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            with TestClient(create_app(config)) as client:
                served = client.app.state.serving.holder.current
                item = served.model.items_.id(0)

                def source(user: str) -> str:
                    return client.get(f"/v1/users/{user}/recommendations").json()["source"]

                # joining a consumer group on Tansu takes ~20 s: wait for both topics to flow
                send("events", {"user_id": "warm", "item_id": item, "event_type": "view", "timestamp": FRESH})
                send("items", {"item_id": "warm-item", "categories": ["x"]})
                wait_until(lambda: source("warm") == "foldin", 120)
                wait_until(lambda: client.get("/v1/items/warm-item").status_code == 200, 120)

                send(
                    "events",
                    {"user_id": "streamed", "item_id": item, "event_type": "like", "timestamp": FRESH},
                )
                assert wait_until(lambda: source("streamed") == "foldin", 10) < 10
                user = served.model.users_.id(2)
                top = client.get(f"/v1/users/{user}/recommendations", params={"k": 1}).json()["items"][0][
                    "item_id"
                ]

                def gone() -> bool:
                    answer = client.get(f"/v1/users/{user}/recommendations", params={"k": 20}).json()
                    return top not in [entry["item_id"] for entry in answer["items"]]

                send("items", {"item_id": top, "available": False})
                assert wait_until(gone, 10) < 10
        finally:
            consumer.terminate()
            out, err = consumer.communicate(timeout=60)
        assert consumer.returncode == 0, err
        assert "kafka:events" in out.decode() and "kafka:items" in out.decode()
