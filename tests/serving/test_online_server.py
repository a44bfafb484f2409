"""Impressions, experiments and the simulator against a real ``recforge serve`` process: a
SIGKILL under load loses at most ``[experiments] flush_ms`` of impressions, and simulated users
tell a trained ALS from the popularity version (issue 18)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import httpx
import pyarrow as pa
import pytest

from recforge.artifacts import ModelRegistry
from recforge.cli.main import main
from recforge.config import load_config
from recforge.data.generate import generate_with_tastes, tastes_path, write_events
from recforge.data.store import EventStore
from recforge.models import ALS, Popular
from recforge.online.impressions import ImpressionStore
from tests.conftest import REPO
from tests.serving.conftest import API_KEY, publish_version
from tests.serving.redis_server import free_port
from tests.serving.test_server import environment, recforge, server


def start(home):
    port = free_port()
    command = recforge("--home", str(home), "serve", "--port", str(port), "--log-level", "warning")
    process = subprocess.Popen(command, cwd=REPO, env=environment(), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise RuntimeError(f"the server did not become ready (exit {process.poll()})")
        time.sleep(0.1)


async def load(url: str, seconds: float, kill_at: float, process: subprocess.Popen) -> tuple[dict, float]:
    """Requests from 8 clients for ``seconds``; SIGKILL of the server after ``kill_at``.
    Returns {recommendation_id: wall time its answer arrived} and the wall time of the kill."""
    answered: dict[str, float] = {}
    killed = [0.0]
    stop = time.monotonic() + seconds

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            j = 0
            while time.monotonic() < stop:
                j += 1
                try:
                    response = await http.get(
                        f"/v1/users/u{(n * 37 + j) % 300}/recommendations", params={"k": 5}
                    )
                except httpx.HTTPError:  # in flight at the kill, or after it
                    await asyncio.sleep(0.01)
                    continue
                if response.status_code == 200:
                    answered[response.json()["recommendation_id"]] = time.time()

    async def killer() -> None:
        await asyncio.sleep(kill_at)
        killed[0] = time.time()
        os.killpg(process.pid, signal.SIGKILL)

    await asyncio.gather(killer(), *(client(n) for n in range(8)))
    return answered, killed[0]


@pytest.mark.slow
def test_sigkill_under_load_loses_at_most_flush_ms_of_impressions(home):
    flush_s = load_config(environ={}).experiments.flush_ms / 1000
    process, url = start(home)
    try:
        for n in range(20):  # warm up: the first answers of a new process are slow
            assert httpx.get(f"{url}/v1/users/u{n}/recommendations", timeout=30).status_code == 200
        answered, killed = asyncio.run(load(url, seconds=4.5, kill_at=3.0, process=process))
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    stored = ImpressionStore(home).scan()  # the dead server's log, unsealed, read as it is
    ids = set(stored.column("recommendation_id").to_pylist())
    lost = {rid: at for rid, at in answered.items() if rid not in ids}
    assert len(answered) > 100
    late = [killed - at for at in lost.values()]
    oldest = max(late, default=0.0)
    print(f"answered {len(answered)}, lost {len(lost)}, the oldest lost {oldest:.3f} s before the kill")
    assert all(age < flush_s for age in late), (len(lost), sorted(late)[-5:])
    assert len(ids) >= len(answered) - len(lost)
    assert stored.column("items").null_count == 0 and pa.compute.min(stored.column("timestamp")).is_valid

    with server(home) as url:  # the next server seals the dead one's log
        assert httpx.get(f"{url}/v1/users/u1/recommendations").status_code == 200
        assert ".parquet" in {path.suffix for path in ImpressionStore(home).parts().values()}
    again = ImpressionStore(home).scan()
    assert ids <= set(again.column("recommendation_id").to_pylist()) and again.num_rows == len(ids) + 1


def cli(capsys, *args):
    code = main([*args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.mark.slow
def test_simulated_users_tell_als_from_popularity(tmp_path, capsys, monkeypatch):
    """The closed loop through the CLI: generate (with tastes), an experiment Popular vs ALS,
    ``recforge simulate``, then the online and experiment reports and an offline A/A."""
    home = tmp_path / "home"
    events, tastes = generate_with_tastes(users=3_000, items=500, events=120_000, seed=11)
    data = write_events(events, tmp_path / "events.parquet")
    tastes.save(tastes_path(data))
    EventStore(home).append(events)
    config = load_config(environ={}, overrides={"home": str(home)})
    popular = publish_version(home, config, Popular())
    als = publish_version(home, config, ALS(factors=32, iterations=8, random_state=0), publish=False)
    assert ModelRegistry(home).current() == popular
    cli(capsys, "--home", str(home), "experiments", "start", "ab", "--control", "current", "--treatment", als)
    with server(home) as url:
        out = cli(
            capsys, "--home", str(home), "simulate", "--host", url, "--requests", "3000",
            "--tastes", str(data), "--seed", "3", "--api-key", API_KEY, "--untagged", "0.3", "--json",
        )  # fmt: skip
        run = json.loads(out)
        assert run["requests"] == 3000 and run["failures"] == 0 and run["events_posted"] > 100
        assert set(run["by_arm"]) == {"ab:control", "ab:treatment"}
    monkeypatch.setenv("RECFORGE_EXPERIMENTS__METRIC", "click")  # decided on clicks: a short run
    report = json.loads(cli(capsys, "--home", str(home), "experiments", "report", "ab", "--json"))
    aa = json.loads(cli(capsys, "--home", str(home), "experiments", "aa", "--experiment", "ab", "--json"))
    arms = report["arms"]
    assert (
        arms["treatment"]["served"][0]["version"] == als
        and arms["control"]["served"][0]["version"] == popular
    )
    assert arms["treatment"]["click_rate"] > arms["control"]["click_rate"]
    assert report["winner"] == "treatment" and report["comparisons"]["click"]["p_value"] < 0.01, report[
        "verdict"
    ]
    assert aa["winners"] <= 5  # the same users split at random: nothing to find
    online = json.loads(cli(capsys, "--home", str(home), "online", "report", "--since", "1d", "--json"))
    assert online["impressions"] == 3000 and online["attributed_events"] == run["events_posted"]
    assert 0 < online["named_events"] < online["attributed_events"]  # 30% of answers untagged
    assert {g["version"] for g in online["groups"]} == {popular, als}
    text = cli(capsys, "--home", str(home), "experiments", "report", "ab")
    assert "verdict: treatment wins" in text and "95% CI" in text
    cli(capsys, "--home", str(home), "experiments", "stop", "ab")
    assert "stopped" in cli(capsys, "--home", str(home), "experiments", "status")
