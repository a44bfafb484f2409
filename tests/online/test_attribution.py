"""Attribution: each rule on hand-made cases, and the vectorised implementation exactly equal to
the one-event-at-a-time reference on a constructed log of 100,000 events (issue 18's target)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from recforge.online.attribution import attribute, attribute_reference, explode
from recforge.online.impressions import IMPRESSION_SCHEMA

HOUR = 3_600_000_000
WINDOW = 24 * HOUR


def stamps(hours):
    return pa.array([int(h * HOUR) for h in hours], pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def impressions(rows):
    """rows of (recommendation_id, user_id, items, hour)"""
    n = len(rows)
    return pa.table(
        {
            "recommendation_id": [r[0] for r in rows],
            "user_id": [r[1] for r in rows],
            "item_id": [None] * n,
            "version": ["v"] * n,
            "source": ["precomputed"] * n,
            "experiment": [None] * n,
            "arm": [None] * n,
            "items": [r[2] for r in rows],
            "timestamp": pa.array([int(r[3] * HOUR) for r in rows], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
        },
        schema=IMPRESSION_SCHEMA,
    )


def events(rows):
    """rows of (user_id, item_id, hour, recommendation_id)"""
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.large_string()),
            "item_id": pa.array([r[1] for r in rows], pa.large_string()),
            "event_type": pa.array(["view"] * len(rows), pa.large_string()),
            "timestamp": pa.array([int(r[2] * HOUR) for r in rows], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "recommendation_id": pa.array([r[3] for r in rows], pa.large_string()),
        }
    )


SHOWN = impressions(
    [
        ("r0", "u1", ["a", "b", "c"], 10),
        ("r1", "u1", ["c", "a"], 20),
        ("r2", "u2", ["a"], 20),
        ("r3", None, ["a", "d"], 20),  # similar items asked without a user
        ("r4", "u1", ["e"], 20),  # same time as r1: recorded later
        ("r5", "u1", ["e"], 20),
    ]
)


@pytest.mark.parametrize("attribute_", [attribute, attribute_reference])
@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (("u1", "b", 11, None), (0, 1, False)),  # the only impression showing b
        (("u1", "a", 21, None), (1, 1, False)),  # the latest showing a, not r0
        (("u1", "a", 20, None), (1, 1, False)),  # at the impression's own time
        (("u1", "a", 19, None), (0, 0, False)),  # before r1: r0
        (("u1", "a", 10 + 24, None), (1, 1, False)),
        (("u1", "b", 10 + 24, None), (0, 1, False)),  # exactly at the end of the window
        (("u1", "b", 10 + 24.001, None), (-1, -1, False)),  # just after it
        (("u1", "b", 9, None), (-1, -1, False)),  # before anything was shown
        (("u1", "d", 21, None), (-1, -1, False)),  # d was shown only without a user
        (("u3", "a", 21, None), (-1, -1, False)),  # someone else
        (("u1", "e", 20, None), (5, 0, False)),  # a tie in time: the one recorded last
        (("u9", "d", 500, "r3"), (3, 1, True)),  # named: whoever, whenever
        (("u1", "a", 21, "r0"), (0, 0, True)),  # named beats latest
        (("u1", "a", 21, "r2"), (2, 0, True)),  # named, another user's impression
        (("u1", "b", 21, "r1"), (0, 1, False)),  # named answer did not show b: by time
        (("u1", "a", 21, "nope"), (1, 1, False)),  # never recorded: by time
    ],
)
def test_rules(attribute_, event, expected):
    found = attribute_(SHOWN, events([event]), WINDOW)
    assert (int(found.impression[0]), int(found.position[0]), bool(found.named[0])) == expected


def test_nothing_to_attribute():
    assert not attribute(SHOWN, events([]), WINDOW).impression.size
    empty = SHOWN.slice(0, 0)
    assert (attribute(empty, events([("u1", "a", 1, "r0")]), WINDOW).impression == -1).all()


def test_explode():
    shown = explode(SHOWN.slice(1, 3))
    assert shown.impression.tolist() == [0, 0, 1, 2, 2]
    assert shown.position.tolist() == [0, 1, 0, 0, 1]
    assert shown.item_id.to_pylist() == ["c", "a", "a", "a", "d"]


def constructed_log(seed: int, n_impressions: int = 20_000, n_events: int = 100_000):
    """Impressions of 0..10 distinct items over 48 hours, on whole seconds (so times tie), 5%
    without a user; events near them (some before, some after the window, some exactly at its
    end), by the same user mostly, on a shown item mostly, 30% naming the impression, 5% naming
    another, 5% naming an unknown id."""
    rng = np.random.default_rng(seed)
    users, items = 300, 200
    second = 1_000_000
    at = rng.integers(0, 48 * HOUR // second, n_impressions) * second
    who = rng.integers(0, users, n_impressions)
    lists = [
        [f"i{j}" for j in rng.choice(items, rng.integers(0, 11), replace=False)] for _ in range(n_impressions)
    ]
    ids = [f"r{k}" for k in range(n_impressions)]
    shown = pa.table(
        {
            "recommendation_id": ids,
            "user_id": [None if rng.random() < 0.05 else f"u{u}" for u in who],
            "item_id": [None] * n_impressions,
            "version": ["v"] * n_impressions,
            "source": ["precomputed"] * n_impressions,
            "experiment": [None] * n_impressions,
            "arm": [None] * n_impressions,
            "items": lists,
            "timestamp": pa.array(at).cast(pa.timestamp("us", tz="UTC")),
        },
        schema=IMPRESSION_SCHEMA,
    )
    base = rng.integers(0, n_impressions, n_events)
    offset = rng.integers(-HOUR // second, 30 * HOUR // second, n_events) * second
    offset[rng.random(n_events) < 0.02] = WINDOW  # exactly at the end of the window
    user = np.where(rng.random(n_events) < 0.8, who[base], rng.integers(0, users, n_events))
    item = [
        lists[b][rng.integers(len(lists[b]))]
        if lists[b] and rng.random() < 0.8
        else f"i{rng.integers(items)}"
        for b in base
    ]
    pick = rng.random(n_events)
    named = [
        ids[b] if x < 0.3 else f"r{rng.integers(n_impressions)}" if x < 0.35 else "nope" if x < 0.4 else None
        for b, x in zip(base, pick, strict=True)
    ]
    happened = pa.table(
        {
            "user_id": pa.array([f"u{u}" for u in user], pa.large_string()),
            "item_id": pa.array(item, pa.large_string()),
            "event_type": pa.array(["view"] * n_events, pa.large_string()),
            "timestamp": pa.array(at[base] + offset).cast(pa.timestamp("us", tz="UTC")),
            "recommendation_id": pa.array(named, pa.large_string()),
        }
    )
    return shown, happened


def test_exact_against_the_reference_on_100k_events():
    shown, happened = constructed_log(0)
    fast = attribute(shown, happened, WINDOW)
    slow = attribute_reference(shown, happened, WINDOW)
    assert np.array_equal(fast.impression, slow.impression)
    assert np.array_equal(fast.position, slow.position)
    assert np.array_equal(fast.named, slow.named)
    # every rule is exercised: named, implied, and not attributed at all
    assert 0.2 < fast.named.mean() < 0.4 and 0.1 < (~fast.attributed).mean() < 0.9
    assert (fast.attributed & ~fast.named).mean() > 0.2
