"""Online metrics on a hand-made log: impressions, CTR, conversion, by position, per group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from recforge.config import load_config
from recforge.data.store import EventStore
from recforge.online.attribution import attribute
from recforge.online.impressions import Impression, ImpressionStore, ImpressionWriter
from recforge.online.rates import online_report, outcomes

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def at(hours: float) -> int:
    return int((T0 + timedelta(hours=hours)).timestamp() * 1e6)


def record(home, rows):
    """rows of (recommendation_id, user_id, version, source, items, hour)"""
    writer = ImpressionWriter(ImpressionStore(home))
    for rid, user, version, source, items, hour in rows:
        writer.write([Impression(rid, user, None, version, source, None, None, items, at(hour))])
    writer.close()


def post(home, rows):
    """rows of (user_id, item_id, event_type, hour, recommendation_id)"""
    EventStore(home).append(
        pa.table(
            {
                "event_id": [f"e{j}" for j in range(len(rows))],
                "user_id": [r[0] for r in rows],
                "item_id": [r[1] for r in rows],
                "event_type": [r[2] for r in rows],
                "value": [1.0] * len(rows),
                "timestamp": [T0 + timedelta(hours=r[3]) for r in rows],
                "recommendation_id": [r[4] for r in rows],
            }
        )
    )


@pytest.fixture
def home(tmp_path):
    record(
        tmp_path,
        [
            ("r1", "u1", "v1", "precomputed", ["a", "b", "c"], 1),
            ("r2", "u2", "v1", "precomputed", ["a", "b"], 1),
            ("r3", "u1", "v1", "foldin", ["c", "d", "e"], 2),
            ("r4", "u3", "v2", "popular", ["a"], 1),
            ("r5", "u3", "v2", "popular", ["a"], 50),
        ],
    )
    post(
        tmp_path,
        [
            ("u1", "b", "view", 1.5, None),  # r1 at position 1
            ("u1", "b", "purchase", 1.6, None),  # r1 converts
            ("u2", "a", "view", 1.5, "r2"),  # r2 at 0, named
            ("u2", "a", "like", 1.7, "r2"),  # a second event on the same item: one click
            ("u1", "e", "view", 3, None),  # r3 at 2
            ("u3", "z", "purchase", 2, None),  # never shown: not attributed
            ("u3", "a", "view", -5, None),  # before anything was shown
        ],
    )
    return tmp_path


def test_outcomes_and_groups(home):
    config = load_config(environ={}, overrides={"home": str(home)})
    report = online_report(home, config, now=T0 + timedelta(hours=60))
    assert report["impressions"] == 5 and report["events"] == 7
    assert report["attributed_events"] == 5 and report["named_events"] == 2
    groups = {(g["version"], g["source"]): g for g in report["groups"]}
    assert list(groups) == [("v1", "foldin"), ("v1", "precomputed"), ("v2", "popular")]
    pre = groups["v1", "precomputed"]
    assert (pre["impressions"], pre["users"], pre["clicks"], pre["conversions"], pre["events"]) == (
        2,
        2,
        2,
        1,
        4,
    )
    assert pre["ctr"] == 1.0 and pre["conversion_rate"] == 0.5
    assert [(p["impressions"], p["clicks"], p["conversions"]) for p in pre["by_position"]] == [
        (2, 1, 0),
        (2, 1, 1),
        (1, 0, 0),
    ]
    fold = groups["v1", "foldin"]
    assert (fold["clicks"], fold["by_position"][2]["ctr"], fold["conversion_rate"]) == (1, 1.0, 0.0)
    popular = groups["v2", "popular"]
    assert (popular["impressions"], popular["users"], popular["ctr"]) == (2, 1, 0.0)


def test_since_and_conversion_types(home):
    config = load_config(
        environ={}, overrides={"home": str(home), "experiments": {"conversion_types": ["like"]}}
    )
    report = online_report(home, config, timedelta(hours=20), now=T0 + timedelta(hours=60))
    assert report["impressions"] == 1 and report["groups"][0]["version"] == "v2"
    everything = online_report(home, config, now=T0 + timedelta(hours=60))
    pre = next(g for g in everything["groups"] if g["source"] == "precomputed")
    assert pre["conversions"] == 1 and pre["by_position"][0]["conversions"] == 1  # the like on r2's a


def test_an_empty_home(tmp_path):
    report = online_report(tmp_path, load_config(environ={}, overrides={"home": str(tmp_path)}))
    assert report["impressions"] == 0 and report["groups"] == []


def test_outcomes_count_each_position_once(home):
    shown = ImpressionStore(home).scan()
    events = EventStore(home).scan()
    found = outcomes(shown.num_rows, events, attribute(shown, events, 24 * 3_600_000_000), ["purchase"])
    assert found.clicked.tolist() == [True, True, True, False, False]
    assert found.events.tolist() == [2, 2, 1, 0, 0]
    assert list(zip(*(a.tolist() for a in found.click_at), strict=True)) == [(0, 1), (1, 0), (2, 2)]
