"""What ``recforge serve`` says on its console: the home, the version served (or what to run
when nothing is), the store and workers at start; every swap; an access log without keys."""

import os
import signal
import subprocess
import time

import httpx

from recforge.artifacts import ModelRegistry
from recforge.models import Popular
from tests.conftest import REPO
from tests.serving.conftest import API_KEY, make_config, publish_version
from tests.serving.redis_server import free_port
from tests.serving.test_server import environment, recforge


def serve(home, log, *args):
    port = free_port()
    command = recforge("--home", str(home), "serve", "--port", str(port), *args)
    process = subprocess.Popen(
        command, cwd=REPO, env=environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return process, f"http://127.0.0.1:{port}"


def wait_for(predicate, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def stop(process):
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=20)


def test_start_up_summary_swaps_and_an_access_log_without_keys(home, tmp_path):
    log_path = tmp_path / "console.log"
    first = ModelRegistry(home).current()
    with log_path.open("w") as log:
        process, url = serve(home, log, "--access-log")
        try:
            assert wait_for(lambda: _ready(url))
            headers = {"Authorization": f"Bearer {API_KEY}"}
            httpx.get(f"{url}/v1/users/u1/recommendations", headers=headers, timeout=5)
            second = publish_version(home, make_config(home), Popular())
            assert wait_for(lambda: f"serving model version {second}" in log_path.read_text())
        finally:
            stop(process)
    console = log_path.read_text()
    assert f"recforge serve: home {home.resolve()}" in console
    assert f"recforge serve: published version {first}" in console
    assert "list store mmap" in console and "1 worker" in console
    assert f"serving model version {second} (popular) (was {first})" in console
    assert "GET /v1/users/u1/recommendations" in console  # the access log
    assert API_KEY not in console


def test_nothing_published_is_a_warning_with_what_to_run(tmp_path):
    home = tmp_path / "fresh"
    home.mkdir()
    log_path = tmp_path / "console.log"
    with log_path.open("w") as log:
        process, url = serve(home, log)
        try:
            assert wait_for(lambda: "Uvicorn running" in log_path.read_text() or process.poll() is not None)
        finally:
            if process.poll() is None:
                stop(process)
    console = log_path.read_text()
    assert "warning: nothing is published here" in console and "recforge pipeline run" in console


def test_a_mistyped_home_is_an_error_not_an_empty_home(tmp_path):
    missing = tmp_path / "hoem"
    for args in (["events", "stats"], ["models", "list"], ["serve"], ["build"], ["pipeline", "status"]):
        done = subprocess.run(
            recforge("--home", str(missing), *args),
            cwd=REPO,
            env=environment(),
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2, args
        assert f"no recforge home at {missing.resolve()}" in done.stderr and "--home" in done.stderr
        assert not missing.exists()


def _ready(url):
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
