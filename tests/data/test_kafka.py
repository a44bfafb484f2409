"""Kafka ingestion (issue 8): payload parsing, the consumer loop against an in-process fake, and
end to end against a real Kafka-protocol broker (Tansu) with real ``recforge`` processes killed
and stopped mid-stream."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from recforge.config import Config
from recforge.data.kafka import KafkaIngestor, ingest_kafka, parse_messages
from recforge.data.store import EventStore
from tests.conftest import REPO

kafka = pytest.importorskip("confluent_kafka")

TOPIC = "events"


def event(i: int, **changes: object) -> bytes:
    record = {
        "event_id": f"e{i}",
        "user_id": f"u{i % 97}",
        "item_id": f"i{i % 31}",
        "event_type": ("view", "like", "cart", "purchase")[i % 4],
        "value": 1.0,
        "timestamp": 1_714_000_000 + i,
    }
    record.update(changes)
    return json.dumps({k: v for k, v in record.items() if v is not None}).encode()


# parsing ---------------------------------------------------------------------------------
def test_parse_well_formed_batch_in_one_read():
    values = [event(i) for i in range(5)]
    parsed = parse_messages(values)
    assert parsed.malformed == {} and parsed.extra == {}
    assert parsed.messages.tolist() == [0, 1, 2, 3, 4]
    assert parsed.table.column("event_id").to_pylist() == [f"e{i}" for i in range(5)]


def test_messages_may_name_the_recommendation_they_followed():
    """Issue 18: a Kafka event's recommendation_id reaches the validated table (null when absent)."""
    from recforge.config import DataConfig
    from recforge.data.validation import validate_table

    parsed = parse_messages([event(1, recommendation_id="r9"), event(2)])
    good, rejected = validate_table(
        parsed.table, DataConfig(), source="kafka", locations={"offset": parsed.messages}
    )
    assert not rejected and good.column("recommendation_id").to_pylist() == ["r9", None]


@pytest.mark.parametrize("subtle", [False, True])
def test_parse_finds_each_malformed_message(subtle):
    """Plainly odd payloads are checked one by one; a subtly broken one (looks like ``{...}``)
    makes Arrow refuse the bulk read, and then every payload is checked."""
    pretty = json.dumps(json.loads(event(7)), indent=2).encode()  # line breaks as whitespace
    values = [
        event(0),
        b"{not json",
        None,
        b"",
        b"  \n ",
        b"[1, 2]",
        b"42",
        b" " + event(4) + b"\t",  # padded, but fine
        pretty,
        b'{"event_id": "e\xff"}',  # invalid UTF-8
        event(3),
        event(1) + event(2) if subtle else b"{oops",  # two objects in one message
        b'{"event_id": oops}' if subtle else b"",
    ]
    parsed = parse_messages(values)
    reasons = {int(parsed.messages[row]): reason for row, reason in parsed.malformed.items()}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 9, 11, 12]
    assert reasons[2] == reasons[3] == reasons[4] == "empty message"
    assert reasons[5] == reasons[6] == "not a JSON object"
    assert all(reasons[i].startswith("invalid JSON") for i in (1, 9, 11))
    good = [int(m) for r, m in enumerate(parsed.messages) if r not in parsed.malformed]
    assert good == [0, 7, 8, 10]
    ids = parsed.table.column("event_id").to_pylist()
    assert ids[: len(good)] == ["e0", "e4", "e7", "e3"] and ids[len(good) :] == [None] * 9


def test_parse_a_batch_of_nothing_but_bad_messages():
    parsed = parse_messages([b"{x", b"", None])
    assert parsed.table.num_rows == 3 and parsed.messages.tolist() == [0, 1, 2]
    assert parsed.malformed[1] == parsed.malformed[2] == "empty message"
    assert parse_messages([]).table.num_rows == 0


def test_parse_mixed_types_falls_back_to_records():
    values = [event(0), event(1, user_id=12), event(2, user_id=True)]
    parsed = parse_messages(values)
    assert parsed.malformed == {}
    assert parsed.table.column("user_id").to_pylist() == ["u0", "12", "true"]
    assert parsed.extra == {2: ["user_id must be a string or a number"]}


# the consumer loop against a fake --------------------------------------------------------
class FakeMessage:
    def __init__(self, partition: int, offset: int, value: bytes | None) -> None:
        self._partition, self._offset, self._value = partition, offset, value

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> None:
        return None


class FakeConsumer:
    """Serves ``logs`` (partition -> payloads) ``chunk`` messages per consume call; records every
    commit with the event ids the store held at that moment; ``hooks[n]`` runs at call ``n``."""

    def __init__(self, logs: dict[int, list[bytes | None]], store: EventStore, chunk: int = 64, hooks=None):
        self.logs, self.store, self.chunk = logs, store, chunk
        self.hooks = hooks or {}
        self.position_of = dict.fromkeys(logs, 0)
        self.commits: list[tuple[dict[int, int], int]] = []
        self.calls = 0
        self.closed = False
        self.assigned = False

    def subscribe(self, topics, on_assign, on_revoke):
        assert topics == [TOPIC]
        self.on_assign, self.on_revoke = on_assign, on_revoke

    def partitions(self):
        return [kafka.TopicPartition(TOPIC, p) for p in sorted(self.logs)]

    def consume(self, num_messages, timeout):
        self.calls += 1
        if not self.assigned:
            self.assigned = True
            self.on_assign(self, self.partitions())
        if self.calls in self.hooks:
            self.hooks[self.calls](self)
        out = []
        for p in sorted(self.logs):
            start = self.position_of[p]
            take = self.logs[p][start : start + min(self.chunk, num_messages - len(out))]
            out += [FakeMessage(p, start + j, v) for j, v in enumerate(take)]
            self.position_of[p] += len(take)
        if not out:
            time.sleep(min(timeout, 0.01))
        return out

    def commit(self, offsets, asynchronous):
        assert asynchronous is False
        stored = set(self.store.scan(["event_id"]).column("event_id").to_pylist())
        self.commits.append(({tp.partition: tp.offset for tp in offsets}, stored))
        return offsets

    def get_watermark_offsets(self, tp, cached, timeout=None):
        return 0, len(self.logs[tp.partition])

    def position(self, tps):
        return [kafka.TopicPartition(TOPIC, tp.partition, self.position_of[tp.partition]) for tp in tps]

    def committed(self, tps, timeout):
        return [kafka.TopicPartition(TOPIC, tp.partition, -1001) for tp in tps]

    def close(self):
        self.closed = True
        self.on_revoke(self, self.partitions())


def small_config(batch_events: int = 100) -> Config:
    config = Config()
    config.kafka.batch_events = batch_events
    config.kafka.max_batch_wait_s = 0.05
    return config


def fake_logs() -> tuple[dict[int, list[bytes | None]], set[str], set[tuple[int, int]]]:
    """Three partitions: 600 events, 60 of them sent again (in another partition), and bad ones."""
    logs: dict[int, list[bytes | None]] = {0: [], 1: [], 2: []}
    bad: set[tuple[int, int]] = set()
    for i in range(600):
        logs[i % 3].append(event(i))
        if i % 10 == 0:
            logs[(i + 1) % 3].append(event(i))
        if i % 50 == 0:
            p = i % 3
            bad.add((p, len(logs[p])))
            logs[p].append(event(i, user_id=None) if i % 100 else b"{oops")
    return logs, {f"e{i}" for i in range(600)}, bad


def quarantined(home: Path) -> list[dict]:
    paths = sorted((home / "quarantine").glob("kafka-*"))
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


def test_batches_are_stored_then_committed(tmp_path):
    store = EventStore(tmp_path)
    logs, ids, bad = fake_logs()
    consumer = FakeConsumer(logs, store)
    ingestor = KafkaIngestor(
        store, small_config(), bootstrap="fake:1", topic=TOPIC, group="g", max_idle=0.3, consumer=consumer
    )
    report = ingestor.run()

    assert set(store.scan(["event_id"]).column("event_id").to_pylist()) == ids
    assert store.stats()["events"] == 600
    total = sum(len(log) for log in logs.values())
    counts = (report.messages, report.accepted, report.duplicates, report.rejected)
    assert counts == (total, 600, 60, len(bad))
    assert report.stopped == "idle" and report.batches >= total // 100 and consumer.closed
    assert report.lag == {0: 0, 1: 0, 2: 0}
    # Each commit covers only what was durable then: the events below its offsets are stored.
    events_of = {(p, o): json.loads(v)["event_id"] for p, log in logs.items() for o, v in enumerate(log)
                 if (p, o) not in bad}  # fmt: skip
    committed: dict[int, int] = {}
    for offsets, stored in consumer.commits:
        assert all(o > committed.get(p, 0) for p, o in offsets.items())
        committed.update(offsets)
        assert {eid for (p, o), eid in events_of.items() if o < committed.get(p, 0)} <= stored
    assert committed == {p: len(log) for p, log in logs.items()}
    rejected = quarantined(tmp_path)
    assert {(r["partition"], r["offset"]) for r in rejected} == bad
    assert all(r["source"] == f"kafka:{TOPIC}" and r["reason"] for r in rejected)
    assert {r["reason"] for r in rejected} >= {"missing user_id"}


def test_a_batch_of_only_bad_messages_is_quarantined_and_committed(tmp_path):
    store = EventStore(tmp_path)
    consumer = FakeConsumer({0: [b"{x"] * 5, 1: [None, event(1, value="many")]}, store)
    ingestor = KafkaIngestor(
        store, small_config(), bootstrap="fake:1", topic=TOPIC, group="g", max_idle=0.2, consumer=consumer
    )
    report = ingestor.run()
    assert (report.rejected, report.accepted, report.segments) == (7, 0, 0)
    assert consumer.commits[-1][0] == {0: 5, 1: 2} and store.stats()["events"] == 0
    reasons = {(r["partition"], r["offset"]): r["reason"] for r in quarantined(tmp_path)}
    assert reasons[(1, 0)] == "empty message" and reasons[(1, 1)] == "value 'many' is not a number"


def test_a_failed_store_commits_nothing_of_its_batch(tmp_path, monkeypatch):
    store = EventStore(tmp_path)
    logs, _, _ = fake_logs()
    consumer = FakeConsumer(logs, store)
    calls = []
    real_append = store.append

    def failing_append(table):
        calls.append(table.num_rows)
        if len(calls) == 3:
            raise OSError("disk full")
        return real_append(table)

    monkeypatch.setattr(store, "append", failing_append)
    ingestor = KafkaIngestor(
        store, small_config(), bootstrap="fake:1", topic=TOPIC, group="g", max_idle=5, consumer=consumer
    )
    with pytest.raises(OSError, match="disk full"):
        ingestor.run()
    assert len(consumer.commits) == 2 and consumer.closed
    assert len(consumer.commits[-1][1]) == store.stats()["events"] > 0


def test_sigterm_stores_and_commits_the_batch_in_hand(tmp_path):
    store = EventStore(tmp_path)
    logs, _, _ = fake_logs()
    config = small_config(batch_events=10_000)
    config.kafka.max_batch_wait_s = 60  # only the signal can end this batch
    consumer = FakeConsumer(logs, store, chunk=20, hooks={4: lambda c: os.kill(os.getpid(), signal.SIGTERM)})
    before = signal.getsignal(signal.SIGTERM)
    report = ingest_kafka(store, config, bootstrap="fake:1", topic=TOPIC, group="g", consumer=consumer)
    assert signal.getsignal(signal.SIGTERM) is before
    assert report.stopped == "signal" and report.batches == 1 and consumer.closed
    taken = sum(consumer.position_of.values())
    assert report.messages == taken < sum(len(log) for log in logs.values())
    assert consumer.commits[-1][0] == consumer.position_of
    assert report.lag == {p: len(log) - consumer.position_of[p] for p, log in logs.items()}
    assert store.stats()["events"] == report.accepted > 0


def test_revoked_partitions_are_stored_and_committed_first(tmp_path):
    store = EventStore(tmp_path)
    logs, _, _ = fake_logs()
    config = small_config(batch_events=10_000)
    config.kafka.max_batch_wait_s = 60
    seen = []

    def revoke(consumer):
        consumer.on_revoke(consumer, consumer.partitions())
        seen.append((len(consumer.commits), dict(consumer.position_of)))
        consumer.on_assign(consumer, consumer.partitions())

    consumer = FakeConsumer(logs, store, chunk=10, hooks={3: revoke})
    KafkaIngestor(
        store, config, bootstrap="fake:1", topic=TOPIC, group="g", max_idle=0.2, consumer=consumer
    ).run()
    (commits, positions), = seen  # fmt: skip
    assert commits == 1 and consumer.commits[0][0] == positions


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_metrics_expose_lag_and_counts(tmp_path):
    store = EventStore(tmp_path)
    logs, _, bad = fake_logs()
    scraped = []
    port = free_port()

    def scrape(consumer):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            scraped.append(response.read().decode())

    consumer = FakeConsumer(logs, store, chunk=50, hooks={5: scrape})
    config = small_config(batch_events=100)
    ingestor = KafkaIngestor(
        store, config, bootstrap="fake:1", topic=TOPIC, group="g", max_idle=0.2, consumer=consumer,
        metrics_port=port,
    )  # fmt: skip
    ingestor.run()
    text = scraped[0]
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line[:1] != "#"}
    lag = {p: samples[f'recforge_kafka_consumer_lag{{partition="{p}",topic="{TOPIC}"}}'] for p in logs}
    assert all(value > 0 for value in lag.values())
    messages = samples[f'recforge_kafka_messages_total{{topic="{TOPIC}"}}']
    assert messages == sum(len(log) for log in logs.values()) - sum(lag.values())
    assert samples[f'recforge_kafka_batches_total{{topic="{TOPIC}"}}'] >= 1


def test_bad_settings_are_refused(tmp_path):
    store = EventStore(tmp_path)
    with pytest.raises(Exception, match="topic must not be empty"):
        KafkaIngestor(store, Config(), bootstrap="b:1", topic=" ", group="g")
    with pytest.raises(Exception, match="max_idle"):
        KafkaIngestor(store, Config(), bootstrap="b:1", topic="t", group="g", max_idle=0)
    config = Config()
    config.kafka.batch_events = 0
    with pytest.raises(Exception, match="batch_events"):
        KafkaIngestor(store, config, bootstrap="b:1", topic="t", group="g")


# end to end against Tansu ----------------------------------------------------------------
def test_ingest_group_keeps_the_files_default(tmp_path, capsys):
    from recforge.cli.main import main

    path = tmp_path / "e.jsonl"
    path.write_bytes(event(1) + b"\n")
    assert main(["--home", str(tmp_path), "ingest", str(path)]) == 0
    assert main(["--home", str(tmp_path), "ingest", "files", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 accepted" in out and "1 duplicate" in out


def make_stream(seed: int = 8) -> tuple[list[bytes], set[str], int, set[int]]:
    """100,000 messages: 90,000 events with ids and 3,000 without (distinct content), 5,000
    repeats of them, 2,000 malformed or invalid. Returns the shuffled payloads, the ids that must
    end up stored, the number of id-less events, and the indices of the bad messages."""
    rng = np.random.default_rng(seed)
    valid = [event(i) for i in range(90_000)]
    valid += [event(i, event_id=None, user_id=f"anon{i}") for i in range(3_000)]
    repeats = [valid[i] for i in rng.integers(0, len(valid), 5_000)]
    kinds = [
        lambda i: b"{broken json " + str(i).encode(),
        lambda i: b"[1, 2, 3]",
        lambda i: b"",
        lambda i: event(100_000 + i, user_id=None),
        lambda i: event(100_000 + i, event_type="teleport"),
        lambda i: event(100_000 + i, timestamp="yesterday"),
        lambda i: event(100_000 + i, value=-3),
        lambda i: event(100_000 + i, item_id={"nested": True}),
    ]
    bad = [kinds[i % len(kinds)](i) for i in range(2_000)]
    messages = valid + repeats + bad
    order = rng.permutation(len(messages))
    first_bad = len(valid) + len(repeats)
    shuffled = [messages[j] for j in order]
    bad_at = {int(k) for k in np.flatnonzero(order >= first_bad)}
    return shuffled, {f"e{i}" for i in range(90_000)}, 3_000, bad_at


def produce(bootstrap: str, messages: list[bytes], indices: range, where: dict[int, tuple[int, int]]) -> None:
    """Send ``messages[i]`` for ``i`` in ``indices`` (key ``i``); record each one's partition and offset."""

    def delivered(error, message):
        assert error is None, error
        where[int(message.key())] = (message.partition(), message.offset())

    producer = kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "queue.buffering.max.messages": 500_000}
    )
    for i in indices:
        producer.produce(TOPIC, messages[i], key=str(i).encode(), on_delivery=delivered)
        if i % 5_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def start_consumer(home: Path, bootstrap: str, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "recforge", "--home", str(home), "ingest", "kafka",
               "--bootstrap", bootstrap, "--topic", TOPIC, "--group", "recforge-test",
               "--batch-events", "1000", "--session-timeout-ms", "6000", "--json", *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def segments(home: Path) -> int:
    return len(list((home / "events").glob("seg-*.parquet")))


def wait_for_segments(process: subprocess.Popen, home: Path, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while segments(home) < count:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"consumer exited early ({process.returncode}): {out}{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {count} segments within {timeout} s: {process.communicate()}")
        time.sleep(0.01)


def committed_offsets(bootstrap: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets (asked without joining the group)."""
    reader = kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "recforge-test"})
    try:
        asked = [kafka.TopicPartition(TOPIC, p) for p in range(partitions)]
        return {tp.partition: max(tp.offset, 0) for tp in reader.committed(asked, timeout=10)}
    finally:
        reader.close()


def finish(process: subprocess.Popen, timeout: float = 90) -> dict:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"consumer did not stop: {process.communicate()}")
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.kafka
def test_kill_stop_and_restart_store_each_valid_event_once(kafka_broker, tmp_path):
    """SIGKILL mid-stream, restart, SIGTERM, restart until idle: the store ends with exactly the
    valid distinct events, the quarantine names each bad message's partition and offset, and the
    offsets committed on SIGTERM match what the stopped consumer stored (its reported lag)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    partitions = 3
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    for future in admin.create_topics([NewTopic(TOPIC, num_partitions=partitions)]).values():
        future.result(30)
    messages, ids, anonymous, bad_at = make_stream()
    where: dict[int, tuple[int, int]] = {}
    home = tmp_path / "home"

    produce(kafka_broker, messages, range(60_000), where)
    first = start_consumer(home, kafka_broker)
    wait_for_segments(first, home, 3)
    first.kill()  # SIGKILL: no flush, no commit, no goodbye to the group
    first.communicate()
    assert sum(committed_offsets(kafka_broker, partitions).values()) <= 60_000

    produce(kafka_broker, messages, range(60_000, len(messages)), where)
    ends = {p: 1 + max(o for q, o in where.values() if q == p) for p in range(partitions)}
    assert sum(ends.values()) == len(messages) == 100_000
    second = start_consumer(home, kafka_broker)
    wait_for_segments(second, home, segments(home) + 3)
    second.send_signal(signal.SIGTERM)
    stopped = finish(second)
    assert stopped["stopped"] == "signal"
    committed = committed_offsets(kafka_broker, partitions)
    # Lag is the fetch's high watermark minus the committed offset: exact for a partition the
    # consumer fetched from. (For one it never fetched, the broker is asked; Tansu 0.6 answers
    # ListOffsets with the last record batch's base offset, an underestimate.)
    lag = {int(p): n for p, n in stopped["lag"].items()}
    assert set(lag) == set(ends) and all(0 <= lag[p] <= ends[p] - committed[p] for p in ends)
    assert any(lag[p] == ends[p] - committed[p] for p in ends)

    third = start_consumer(home, kafka_broker, "--max-idle", "3")
    last = finish(third)
    assert last["stopped"] == "idle" and last["total_lag"] == 0
    assert last["messages"] == 100_000 - sum(committed.values())  # a clean stop leaves no replay
    assert committed_offsets(kafka_broker, partitions) == ends

    stored = EventStore(home).scan(["event_id"]).column("event_id").to_pylist()
    assert len(stored) == len(set(stored)) == len(ids) + anonymous
    assert {i for i in stored if not i.startswith("~")} == ids
    rejected = quarantined(home)
    assert {(r["partition"], r["offset"]) for r in rejected} == {where[i] for i in bad_at}
    assert all(r["reason"] and r["source"] == f"kafka:{TOPIC}" for r in rejected)


def test_an_unreachable_broker_is_one_line_and_exit_2(tmp_path):
    # issue 14: librdkafka logged its errors endlessly and --max-idle was ignored
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bootstrap = f"127.0.0.1:{port}"
    command = [sys.executable, "-m", "recforge", "--home", str(tmp_path), "ingest", "kafka",
               "--bootstrap", bootstrap, "--topic", TOPIC, "--group", "g", "--max-idle", "2"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"recforge: error: kafka: no broker at 127.0.0.1:{port} answered within 2 s "
        "(Failed to get metadata: Local: Broker transport failure)"
    ]
    assert time.monotonic() - started < 20


@pytest.mark.slow
@pytest.mark.kafka
def test_a_broker_restarted_mid_stream_leaves_exact_counts(tmp_path):
    """Issue 14: the broker goes away under a running consumer and comes back on the same port.
    Tansu keeps topics in memory (its other engines need Postgres or S3), so it comes back empty:
    the test waits until the first part is stored, restarts the broker, creates the topic again
    and sends the rest (with repeats of the first part). The consumer rides through the outage and
    every valid event is stored exactly once, every bad message quarantined once."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from tests.tansu import BrokerUnavailable, start_tansu, stop_tansu, tansu_binary

    try:
        tansu_binary()
    except BrokerUnavailable as error:
        pytest.skip(str(error))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bootstrap, log = f"127.0.0.1:{port}", tmp_path / "tansu.log"

    def broker_up() -> subprocess.Popen:
        process = start_tansu(port, log)
        assert process is not None, log.read_text()[-2000:]
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(TOPIC, num_partitions=2)]).values():
            future.result(30)
        return process

    def messages(first: int, count: int) -> list[bytes]:
        return [event(i) if i % 50 else b"{broken" for i in range(first, first + count)]

    def stored() -> list[str]:
        return EventStore(home).scan(["event_id"]).column("event_id").to_pylist()

    def wait_until(predicate, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if consumer.poll() is not None:
                pytest.fail(f"the consumer exited while waiting for {what}: {consumer.communicate()}")
            assert time.monotonic() < deadline, f"no {what} within {timeout} s"
            time.sleep(0.2)

    home = tmp_path / "home"
    broker = broker_up()
    first = messages(0, 4_000)
    produce(bootstrap, first, range(len(first)), {})
    consumer = start_consumer(home, bootstrap, "--max-idle", "90")
    try:
        wait_until(lambda: len(stored()) == 4_000 - 80, "the first part stored")
        stop_tansu(broker)  # mid-stream: the consumer is polling, its group goes with the broker
        time.sleep(3)
        broker = broker_up()
        second = messages(4_000, 3_000) + messages(0, 1_000)  # new events, then repeats
        produce(bootstrap, second, range(len(second)), {})
        wait_until(lambda: len(stored()) == 7_000 - 140, "the second part stored")
        consumer.send_signal(signal.SIGTERM)
        report = finish(consumer)
    finally:
        if consumer.poll() is None:
            consumer.kill()
        stop_tansu(broker)
    ids = stored()
    assert len(ids) == len(set(ids)) == 7_000 - 140
    assert set(ids) == {f"e{i}" for i in range(7_000) if i % 50}
    assert (report["accepted"], report["duplicates"]) == (len(ids), 1_000 - 20)  # the repeats, once
    assert report["rejected"] == len(quarantined(home)) == 80 + 60 + 20  # once per time it was sent
