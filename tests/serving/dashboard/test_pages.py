"""The dashboard's pages and actions over HTTP (FastAPI's TestClient): what each page says,
the admin key's checks, bad parameters, an empty home, the Kafka consumer's lag, the server's
own traffic numbers, and ``recforge dashboard``."""

from __future__ import annotations

import re
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from recforge.artifacts import ModelRegistry
from recforge.cli.main import main
from recforge.config import load_config
from recforge.data.kafka import _Metrics
from recforge.serving import create_app
from recforge.serving.dashboard import create_dashboard_app
from recforge.serving.dashboard.live import LiveMetrics, parse_sample, quantile, window
from tests.serving.dashboard.browser import free_port, serve
from tests.serving.dashboard.homes import ADMIN_KEY, API_KEY, dashboard_config

PAGES = ("/ui/", "/ui/pipeline", "/ui/models", "/ui/users", "/ui/items", "/ui/tuning")


def wait_refreshed(app) -> None:
    deadline = time.monotonic() + 60
    while app.state.dashboard.refreshed is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.state.dashboard.refreshed is not None


@pytest.fixture(scope="module")
def client(dashboard_home):
    app = create_app(dashboard_config(dashboard_home))
    with TestClient(app) as client:
        wait_refreshed(app)
        yield client


def text(response) -> str:
    return re.sub(r"<[^>]+>", " ", response.text)


def test_every_page_answers_with_its_server_time(client):
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        timing = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
        assert float(timing["total"]) >= float(timing["data"]) >= 0 and float(timing["total"]) > 0
    assert client.get("/ui", follow_redirects=False).status_code == 307
    assert client.get("/ui/static/dashboard.css").status_code == 200


def test_pages_tell_the_truth_about_the_home(client, dashboard_home):
    registry = ModelRegistry(dashboard_home)
    overview = text(client.get("/ui/"))
    assert "20,000" in overview and registry.current() in overview
    pipeline = text(client.get("/ui/pipeline"))
    assert pipeline.count("succeeded") == 2 and "passes the gate" in pipeline
    models = text(client.get("/ui/models"))
    assert all(v.version in models for v in registry.list())
    tuning = client.get("/ui/tuning").text
    assert "als-small" in tuning and tuning.count('class="chosen"') >= 2  # marked in charts and the table
    model = registry.open().model
    item = model.items_.id(0)
    page = text(client.get("/ui/items", params={"item_id": item}))
    similar = model.similar_items(item, k=3)[0]
    assert all(s in page for s in similar)


def test_bad_parameters_are_4xx_with_a_message(client):
    response = client.get("/ui/users", params={"user_id": "u" * 300})
    assert response.status_code == 422 and "longer than" in response.json()["detail"]
    response = client.get("/ui/items", params={"item_id": "i" * 300})
    assert response.status_code == 422
    assert client.get("/ui/users", params={"user_id": "never-seen"}).status_code == 200
    assert client.get("/ui/items", params={"item_id": "never-seen"}).status_code == 200
    too_big = client.post("/ui/models/rollback", content=b"key=" + b"x" * 5000)
    assert too_big.status_code == 413


def test_actions_need_an_admin_key(dashboard_home, tmp_path):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(dashboard_home, home, symlinks=True)
    registry = ModelRegistry(home)
    current = registry.current()
    older = next(v.version for v in registry.list() if v.version != current)
    with TestClient(create_app(dashboard_config(home))) as client:
        refused = client.post("/ui/models/publish", data={"version": older})
        assert refused.status_code == 401 and "admin key" in refused.text
        refused = client.post("/ui/models/publish", data={"version": older, "key": API_KEY})
        assert refused.status_code == 401 and registry.current() == current
        missing = client.post("/ui/models/publish", data={"version": "v-nope", "key": ADMIN_KEY})
        assert missing.status_code == 404 and "not a model version" in missing.text
        done = client.post(
            "/ui/models/publish",
            data={"version": older},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            follow_redirects=False,
        )
        assert done.status_code == 303 and registry.current() == older
        # back in publish history (issue 14): to the version published before
        back = client.post("/ui/models/rollback", data={"key": ADMIN_KEY}, follow_redirects=False)
        assert back.status_code == 303 and registry.current() == current
    with TestClient(create_app(dashboard_config(home, admin_keys=[]))) as client:
        disabled = client.post("/ui/models/rollback", data={"key": ADMIN_KEY})
        assert disabled.status_code == 403 and "no admin keys" in disabled.text
        assert registry.current() == current


def test_an_empty_home_and_a_server_without_the_dashboard(tmp_path):
    config = load_config(environ={}, overrides={"home": str(tmp_path)})
    with TestClient(create_app(config)) as client:
        wait_refreshed(client.app)
        for path in PAGES:
            assert client.get(path).status_code == 200, path
        assert client.get("/ui/users", params={"user_id": "x"}).status_code == 200
        assert "No model is loaded" in client.get("/ui/items", params={"item_id": "x"}).text
    config.serving.dashboard = False
    with TestClient(create_app(config)) as client:
        assert client.get("/ui/").status_code == 404
        assert not hasattr(client.app.state, "dashboard")


def test_the_overview_shows_a_kafka_consumers_lag(dashboard_home):
    consumer = _Metrics("events", "127.0.0.1", 0)  # what `recforge ingest kafka` serves
    try:
        consumer.record(100, 90, 5, 5, {0: 7, 1: 5})
        config = dashboard_config(dashboard_home)
        config.kafka.metrics_port = consumer.port
        app = create_app(config)
        with TestClient(app) as client:
            app.state.dashboard.kafka.sample()
            page = text(client.get("/ui/"))
        assert re.search(r"Kafka lag\s+12\s", page), page[:3000]
    finally:
        consumer.close()
    app = create_app(config)  # the consumer is gone
    with TestClient(app) as client:
        app.state.dashboard.kafka.sample()
        assert "no consumer answering" in client.get("/ui/").text


def test_traffic_numbers_come_from_the_servers_own_histograms():
    metrics = """
# TYPE recforge_http_requests_total counter
recforge_http_requests_total{route="/v1/users/{user_id}/recommendations",method="GET",status="200"} %d
recforge_http_requests_total{route="/v1/users/{user_id}/recommendations",method="GET",status="503"} %d
recforge_http_requests_total{route="/ui/",method="GET",status="200"} 1000
# TYPE recforge_http_request_duration_seconds histogram
recforge_http_request_duration_seconds_bucket{route="/v1/a",method="GET",status="200",le="0.001"} %d
recforge_http_request_duration_seconds_bucket{route="/v1/a",method="GET",status="200",le="0.01"} %d
recforge_http_request_duration_seconds_bucket{route="/v1/a",method="GET",status="200",le="+Inf"} %d
recforge_http_request_duration_seconds_count{route="/v1/a",method="GET",status="200"} %d
recforge_http_request_duration_seconds_sum{route="/v1/a",method="GET",status="200"} 1.0
"""
    before = parse_sample(metrics % (0, 0, 0, 0, 0, 0), 100.0)
    after = parse_sample(metrics % (90, 10, 50, 99, 100, 100), 110.0)
    w = window(before, after)
    assert w.request_rate == pytest.approx(10.0)  # the /ui/ route is not API traffic
    assert w.error_rate == pytest.approx(0.1)
    assert w.p50 == pytest.approx(0.001)  # the 50th of 100 is the last of the first bucket
    assert w.p99 == pytest.approx(0.01)
    assert quantile(0.5, {}, {}) is None
    live = LiveMetrics(lambda at: parse_sample(metrics % (1, 0, 1, 1, 1, 1), at), "x", interval=1)
    live.sample()
    live.sample()
    assert live.recent() is not None and set(live.series()) == {"requests/s", "p99 ms"}
    broken = LiveMetrics(lambda at: parse_sample(str(1 / 0), at), "x")
    broken.sample()
    assert broken.latest() is None and "ZeroDivisionError" in (broken.error or "")


def test_recforge_dashboard_serves_a_home_and_reads_a_servers_metrics(dashboard_home):
    server_app = create_app(dashboard_config(dashboard_home, dashboard=False))
    with serve(server_app, ready_path="/readyz") as api:
        for n in range(5):
            httpx.get(f"{api}/v1/users/u{n}/recommendations", timeout=10)
        app = create_dashboard_app(dashboard_config(dashboard_home), metrics_url=f"{api}/metrics")
        with TestClient(app) as client:
            wait_refreshed(app)
            app.state.dashboard.live.sample()
            for path in PAGES:
                assert client.get(path).status_code == 200, path
            assert client.get("/", follow_redirects=False).status_code == 307
            model = ModelRegistry(dashboard_home).open().model
            user = model.users_.id(int(np.argmax(np.diff(model.seen_.indptr))))
            page = client.get("/ui/users", params={"user_id": user}).text
            assert page.count('class="rec"') == 10 and page.count("%</span>") == 30
            assert f"{api}/metrics" in client.get("/ui/").text
            assert client.get("/v1/model").status_code == 404  # no API here


def test_the_dashboard_command_is_registered(capsys):
    assert main(["dashboard", "--help"]) == 0
    assert "--metrics-url" in capsys.readouterr().out
    assert free_port() > 0


def test_with_auth_reads_the_pages_need_a_key_too(dashboard_home):
    from recforge.serving.dashboard import create_dashboard_app

    config = dashboard_config(dashboard_home, auth_reads=True)
    with TestClient(create_dashboard_app(config)) as client:
        refused = client.get("/ui/users", params={"user_id": "u1"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
        assert client.get("/ui/", auth=("anyone", "wrong")).status_code == 401
        assert client.get("/ui/", auth=("anyone", API_KEY)).status_code == 200
        assert client.get("/ui/", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200


def test_the_servers_own_counters_are_read_without_an_exposition():
    from recforge.serving.dashboard.live import registry_sample
    from recforge.serving.telemetry import Metrics

    metrics = Metrics()
    for n in range(40):
        metrics.observe_request("/v1/users/{user_id}/recommendations", "GET", 200 if n else 503, 0.002 * n)
    metrics.observe_request("/ui/", "GET", 200, 1.0)
    metrics.events_accepted.inc(7)
    direct = registry_sample(metrics, 1.0)
    parsed = parse_sample(metrics.render().decode(), 1.0)
    assert direct == parsed
    assert direct.requests == 40 and direct.errors == 1 and direct.events_accepted == 7


def test_the_first_refresh_is_announced_once(dashboard_home):
    """The server freezes what the first refresh loaded (``gc.freeze``): the hook runs once."""
    from recforge.serving.dashboard import Dashboard

    calls = []
    dashboard = Dashboard(
        dashboard_config(dashboard_home),
        lambda: None,
        refresh_seconds=0.05,
        on_first_refresh=lambda: calls.append(1),
    )
    dashboard.start()
    try:
        deadline = time.monotonic() + 30
        while (
            dashboard.refreshed is None or time.monotonic() < deadline - 29.5
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        dashboard.stop()
    assert dashboard.refreshed is not None and calls == [1]
    assert "als-small" in dashboard.studies
