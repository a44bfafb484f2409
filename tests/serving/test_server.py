"""End to end: ``recforge serve`` as a real uvicorn process on a free port, ``recforge
loadtest`` against it, and publishes while it is under load."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recforge.artifacts import ModelRegistry
from recforge.data.build import build_interactions
from recforge.data.store import EventStore
from recforge.models import Popular
from tests.conftest import REPO
from tests.serving.conftest import API_KEY, AS_OF, N_EVENTS, make_config, publish_version
from tests.serving.factors import ToyFactors
from tests.serving.redis_server import free_port, redis_server

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def recforge(*args: str) -> list[str]:
    """A ``recforge`` command line that also registers the test-only ToyFactors model."""
    code = (
        "import sys, tests.serving.factors; from recforge.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", code, *args]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECFORGE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    env["RECFORGE_API_KEYS"] = API_KEY
    env["RECFORGE_SERVING__RELOAD_POLL_SECONDS"] = "0.2"
    env.update(extra)
    return env


@contextlib.contextmanager
def server(home: Path, *args: str, **env: str) -> Iterator[str]:
    port = free_port()
    command = recforge("--home", str(home), "serve", "--port", str(port), "--log-level", "warning", *args)
    process = subprocess.Popen(command, cwd=REPO, env=environment(**env), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready (exit {process.poll()})")
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_served_over_http(home):
    version = ModelRegistry(home).current()
    with server(home) as url, httpx.Client(base_url=url) as client:
        body = client.get("/v1/users/u1/recommendations", params={"k": 3}).json()
        assert body["model_version"] == version and len(body["items"]) == 3
        batch = [
            {"user_id": "e2e", "item_id": "i2", "event_type": "cart", "timestamp": "2025-06-01T00:00:00Z"}
        ]
        response = client.post("/v1/events", json=batch, headers=AUTH)
        assert response.status_code == 202 and response.json()["accepted"] == 1
        assert client.get("/v1/users/e2e/recommendations").json()["source"] == "foldin"
        assert client.post("/v1/events", json=batch).status_code == 401
        assert client.get("/v1/users/u1/recommendations", params={"k": "many"}).status_code == 422
        assert "recforge_http_requests_total" in client.get("/metrics").text
        newer = publish_version(home, make_config(home), Popular())
        deadline = time.monotonic() + 20
        while client.get("/v1/model").json()["version"] != newer and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/v1/users/u1/recommendations").json()["model_version"] == newer


@pytest.mark.slow
def test_loadtest_with_publishes_has_no_failures(home, tmp_path):
    config = make_config(home)
    candidates = [publish_version(home, config, ToyFactors(factors=f), publish=False) for f in (4, 5, 6)]
    with server(home) as url:
        command = recforge(
            "--home", str(home), "loadtest", "--host", url, "--users", "8", "--rate", "80",
            "--duration", "6", "--event-batch", "20", "--json", "--csv", str(tmp_path / "run"),
        )  # fmt: skip
        run = subprocess.Popen(command, cwd=REPO, env=environment(), stdout=subprocess.PIPE, text=True)
        registry = ModelRegistry(home)
        for version in candidates:
            time.sleep(1.2)
            registry.publish(version)
        output, _ = run.communicate(timeout=120)
        assert run.returncode == 0, output
        served = httpx.get(f"{url}/v1/model").json()["version"]
    rows = {row["name"]: row for row in json.loads(output.strip().splitlines()[-1])}
    total = rows["Aggregated"]
    assert total["failures"] == 0 and total["requests"] > 150
    assert {"/v1/users/{user_id}/recommendations", "/v1/items/{item_id}/similar", "/v1/events"} <= set(rows)
    assert served == candidates[-1]
    assert (tmp_path / "run_stats.csv").exists()
    # issue 14: the load test's events are marked, and builds leave them out
    stored = EventStore(home).scan(["event_id"]).column("event_id").to_pylist()
    posted = [e for e in stored if not e.startswith("e")]  # the generated events are e<tag>-<n>
    assert posted and all(e.startswith("loadtest-") for e in posted)
    assert build_interactions(EventStore(home), config, as_of=AS_OF).info["events"] == N_EVENTS


@pytest.mark.slow
@pytest.mark.redis
def test_two_workers_share_fresh_events_through_redis(home):
    publish_version(home, make_config(home), Popular())  # worker processes know only real models
    with redis_server() as redis_url, server(home, "--workers", "2", "--store", redis_url) as url:
        batch = [
            {"event_id": f"w{j}", "user_id": "shared", "item_id": f"i{j}", "event_type": "view",
             "timestamp": "2025-06-01T00:00:00Z"}
            for j in range(1, 4)
        ]  # fmt: skip
        # new connections are spread over the workers: each request may land on either
        assert httpx.post(f"{url}/v1/events", json=batch, headers=AUTH).status_code == 202
        sources = {httpx.get(f"{url}/v1/users/shared/recommendations").json()["source"] for _ in range(12)}
        assert sources == {"foldin"}
        text = httpx.get(f"{url}/metrics").text
        assert "recforge_events_accepted_total 3.0" in text  # summed over the worker processes
        assert text.count("recforge_model_info{") == 2  # one per worker process (a pid label each)


@pytest.mark.slow
def test_workers_get_the_keys_from_a_private_file_not_the_environment(home):
    # issue 14: `serve --workers N` passed the raw keys to its workers in an environment variable
    import psutil

    publish_version(home, make_config(home), Popular())  # worker processes know only real models
    with server(home, "--workers", "2", RECFORGE_ADMIN_KEYS="admin-secret-42") as url:
        assert httpx.post(f"{url}/v1/events", json=[], headers=AUTH).status_code == 422  # the key works
        port = int(url.rsplit(":", 1)[1])
        main = next(
            p for p in psutil.process_iter(["cmdline"]) if str(port) in " ".join(p.info["cmdline"] or [])
        )
        workers = main.children(recursive=True)
        assert len([w for w in workers if "multiprocessing" in " ".join(w.cmdline())]) >= 2
        config_files = set()
        for process in [main, *workers]:
            environ = process.environ()
            assert API_KEY not in "".join(environ.values()) or process.pid == main.pid
            assert "admin-secret-42" not in "".join(environ.values()) or process.pid == main.pid
            if "RECFORGE_SERVE_CONFIG" in environ:
                config_files.add(environ["RECFORGE_SERVE_CONFIG"])
        (path,) = config_files
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    assert not os.path.exists(path)  # removed with the server
