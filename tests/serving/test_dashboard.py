"""The Grafana dashboard is valid JSON and only queries metrics the server exposes."""

from __future__ import annotations

import json
import re

from prometheus_client import generate_latest

from recforge.serving.telemetry import Metrics
from tests.conftest import REPO


def test_dashboard_queries_only_exposed_metrics():
    dashboard = json.loads((REPO / "deploy" / "grafana" / "recforge-serving.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    queried = {name for expr in exprs for name in re.findall(r"recforge_[a-z_]+", expr)}
    metrics = Metrics()
    metrics.observe_request("/x", "GET", 200, 0.01)
    metrics.model_loaded_now(None, ("v1", "als"))
    for counter in (metrics.fallbacks, metrics.recommendations):
        counter.labels(*["x"] * len(counter._labelnames)).inc()
    exposed = set(re.findall(r"^(recforge_[a-z_]+)", generate_latest(metrics.registry).decode(), re.M))
    assert queried and queried <= exposed, sorted(queried - exposed)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
