"""The items topic (issue 15): catalog changes from Kafka, applied exactly once, against an
in-process fake consumer and against the Tansu broker with a ``recforge`` process killed
mid-stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recforge.catalog import CatalogStore
from recforge.catalog.kafka import ItemSink
from recforge.config import Config
from recforge.data.kafka import KafkaIngestor
from tests.conftest import REPO

kafka = pytest.importorskip("confluent_kafka")
TOPIC = "items"


def item(i: int, round_: int) -> bytes:
    """Item ``i % 50``'s change number ``round_``: availability flips, the price is the round."""
    return json.dumps(
        {"item_id": f"i{i % 50}", "available": round_ % 2 == 0, "attributes": {"price": round_}}
    ).encode()


def stream(n: int = 600) -> tuple[dict[int, list[bytes | None]], dict[str, tuple[bool, int]], int]:
    """Two partitions (an item always in the same one, so its changes stay in order) and bad
    messages among them; the final state of each item, and the number of valid messages."""
    logs: dict[int, list[bytes | None]] = {0: [], 1: []}
    final: dict[str, tuple[bool, int]] = {}
    valid = 0
    for i in range(n):
        round_ = i // 50
        logs[(i % 50) % 2].append(item(i, round_))
        final[f"i{i % 50}"] = (round_ % 2 == 0, round_)
        valid += 1
        if i % 97 == 0:
            logs[i % 2].append(b'{"item_id": "x", "available": "perhaps"}' if i % 2 else b"{oops")
    return logs, final, valid


class FakeConsumer:
    """Serves ``logs`` from the assigned positions, ``chunk`` messages per call per partition."""

    def __init__(self, logs: dict[int, list[bytes | None]], chunk: int = 40) -> None:
        self.logs, self.chunk = logs, chunk
        self.position_of = dict.fromkeys(logs, 0)
        self.started = False
        self.commits: list[dict[int, int]] = []

    def subscribe(self, topics, on_assign, on_revoke):
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def assign(self, partitions):
        for tp in partitions:
            if tp.offset >= 0:
                self.position_of[tp.partition] = tp.offset

    def consume(self, num_messages, timeout):
        if not self.started:
            self.started = True
            self.on_assign(self, [kafka.TopicPartition(TOPIC, p) for p in sorted(self.logs)])
        out = []
        for p in sorted(self.logs):
            start = self.position_of[p]
            take = self.logs[p][start : start + self.chunk]
            out += [_Message(p, start + j, v) for j, v in enumerate(take)]
            self.position_of[p] += len(take)
        if not out:
            time.sleep(0.01)
        return out

    def commit(self, offsets, asynchronous):
        self.commits.append({tp.partition: tp.offset for tp in offsets})
        return offsets

    def get_watermark_offsets(self, tp, cached, timeout=None):
        return 0, len(self.logs[tp.partition])

    def position(self, tps):
        return [kafka.TopicPartition(TOPIC, tp.partition, self.position_of[tp.partition]) for tp in tps]

    def committed(self, tps, timeout):
        return [kafka.TopicPartition(TOPIC, tp.partition, -1001) for tp in tps]

    def close(self):
        self.on_revoke(self, [kafka.TopicPartition(TOPIC, p) for p in sorted(self.logs)])


class _Message:
    def __init__(self, partition, offset, value):
        self._p, self._o, self._v = partition, offset, value

    def value(self):
        return self._v

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def error(self):
        return None


def config() -> Config:
    settings = Config()
    settings.kafka.batch_events = 100
    settings.kafka.max_batch_wait_s = 0.05
    return settings


def run(home: Path, consumer: FakeConsumer):
    store = CatalogStore(home)
    ingestor = KafkaIngestor(
        ItemSink(store, TOPIC), config(), bootstrap="fake:1", topic=TOPIC, group="g", max_idle=0.3,
        consumer=consumer,
    )  # fmt: skip
    return ingestor.run()


def test_items_are_applied_once_even_when_the_group_forgot_its_offsets(tmp_path):
    logs, final, valid = stream()
    report = run(tmp_path, FakeConsumer(logs))
    store = CatalogStore(tmp_path)
    assert (report.accepted, report.rejected) == (valid, sum(len(v) for v in logs.values()) - valid)
    assert store.seq() == valid  # one change number per applied message
    for item_id, (available, price) in final.items():
        row = store.get(item_id).to_dict()
        assert (row["available"], row["attributes"]["price"]) == (available, price)
    assert store.offsets(TOPIC) == {p: len(log) for p, log in logs.items()}
    quarantine = [
        json.loads(line) for p in (tmp_path / "quarantine").iterdir() for line in p.read_text().splitlines()
    ]
    assert {(r["partition"], r["offset"]) for r in quarantine} == {
        (p, o)
        for p, log in logs.items()
        for o, v in enumerate(log)
        if b"perhaps" in (v or b"") or v == b"{oops"
    }
    # a consumer of a group that never committed starts from the store's offsets: nothing again
    again = run(tmp_path, FakeConsumer(logs))
    assert again.messages == 0 and store.seq() == valid


@pytest.mark.slow
@pytest.mark.kafka
def test_a_killed_items_consumer_applies_each_message_once(kafka_broker, tmp_path):
    """Tansu, two partitions; the ``recforge ingest kafka --items-topic`` process is SIGKILLed
    after its first batches and restarted: every valid message applied exactly once (the change
    numbers count them) and each item ends in its last state."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_broker})
    for future in admin.create_topics([NewTopic(TOPIC, num_partitions=2)]).values():
        future.result(30)
    logs, final, valid = stream(3000)
    producer = kafka.Producer({"bootstrap.servers": kafka_broker, "linger.ms": 5})
    for partition, log in logs.items():
        for value in log:
            producer.produce(TOPIC, value, partition=partition)
    assert producer.flush(60) == 0
    home = tmp_path / "home"
    command = [sys.executable, "-m", "recforge", "--home", str(home), "ingest", "kafka", "--bootstrap",
               kafka_broker, "--items-topic", TOPIC, "--group", "g", "--batch-events", "200",
               "--session-timeout-ms", "6000", "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    first = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    store = CatalogStore(home)
    deadline = time.monotonic() + 120
    while store.seq() < 400 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first.kill()
    first.communicate()
    assert 0 < store.seq() < valid, store.seq()
    second = subprocess.run([*command, "--max-idle", "3"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=180)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert store.seq() == valid
    for item_id, (available, price) in final.items():
        row = store.get(item_id).to_dict()
        assert (row["available"], row["attributes"]["price"]) == (available, price)
