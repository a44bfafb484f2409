"""The process probe: CPU, memory, open client connections and event-loop lag, measured for real."""

from __future__ import annotations

import asyncio
import socket
import time

from prometheus_client import generate_latest

from recforge.serving.telemetry import Metrics, ProcessProbe, open_connections


def value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    sample = metrics.registry.get_sample_value(name, labels)
    assert sample is not None, name
    return sample


def test_open_connections_counts_clients_of_our_listening_ports_only():
    before = open_connections()
    assert before is not None
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    accepted = [server.accept()[0] for _ in clients]
    try:
        # the three accepted sockets count; the three client ends (ephemeral ports) do not
        assert open_connections() == before + 3
        accepted[0].close()
        clients[0].close()
        assert open_connections() == before + 2
    finally:
        for s in [*clients, *accepted, server]:
            s.close()


def test_probe_measures_the_lag_of_a_blocked_event_loop_and_samples_the_process():
    metrics = Metrics()

    async def scenario() -> None:
        probe = ProcessProbe(metrics, interval=0.05, lag_interval=0.02)
        probe.start()
        await asyncio.sleep(0.1)
        time.sleep(0.3)  # hold the loop, as a CPU-bound handler on the loop would
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            sum(range(200_000))  # some CPU time to account for
            await asyncio.sleep(0.01)
        await probe.stop()

    asyncio.run(scenario())
    assert value(metrics, "recforge_event_loop_lag_seconds_count") >= 5
    # the blocked 0.3 s shows up as one late wake-up (the bucket above 0.25 s)
    assert value(metrics, "recforge_event_loop_lag_seconds_sum") >= 0.25
    assert value(metrics, "recforge_event_loop_lag_seconds_bucket", {"le": "0.1"}) < value(
        metrics, "recforge_event_loop_lag_seconds_count"
    )
    assert value(metrics, "recforge_process_cpu_seconds_total") > 0
    assert value(metrics, "recforge_process_resident_memory_bytes") > 10 << 20
    assert value(metrics, "recforge_open_connections") >= 0
    text = generate_latest(metrics.registry).decode()
    assert "recforge_open_connections" in text and "recforge_event_loop_lag_seconds_bucket" in text
