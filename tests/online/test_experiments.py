"""Experiments: the book, sticky assignment, the two-proportion test against scipy, the verdict's
rules, the report (arms, versions served when), and A/A on a recorded log."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from recforge.artifacts import ModelRegistry
from recforge.config import ExperimentsConfig, load_config
from recforge.data.build import build_interactions
from recforge.data.generate import generate_events
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.models import Popular
from recforge.online.experiments import ExperimentBook, aa_test, arm_of, compare, experiment_report, verdict
from recforge.online.impressions import Impression, ImpressionStore, ImpressionWriter
from recforge.precompute import precompute

T0 = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """A home with events and two Popular versions (the first published)."""
    home = tmp_path_factory.mktemp("experiments")
    EventStore(home).append(generate_events(users=50, items=20, events=500, seed=1))
    interactions = build_interactions(EventStore(home), load_config(environ={}))
    registry = ModelRegistry(home)
    names = []
    for _ in range(2):
        model = Popular().fit(interactions)
        names.append(
            registry.create(model, precompute(model, interactions, k_users=5, k_items=5, k_popular=5)).version
        )
    registry.publish(names[0])
    return home, names


def test_book_start_stop_and_refusals(versions, tmp_path):
    home, (v1, v2) = versions
    book = ExperimentBook(home)
    assert book.running() is None and book.all() == [] and book.stamp() is None
    started = book.start("first", "current", v2, 0.25, now=T0)
    assert started.running and book.running() == started and book.get("first") == started
    with pytest.raises(RecforgeError, match="running"):
        book.start("second", v1, v2, 0.5)
    stamp = book.stamp()
    book.stop("first", now=T0 + timedelta(hours=1))
    assert book.stamp() != stamp  # servers notice
    with pytest.raises(RecforgeError, match="exists already"):
        book.start("first", v1, v2, 0.5)
    assert book.running() is None and book.get("first").stopped is not None
    with pytest.raises(RecforgeError, match="was stopped"):
        book.stop("first")
    for bad, message in [
        (("bad name!", v1, v2, 0.5), "experiment name"),
        (("x", v1, v2, 0.0), "share"),
        (("x", v1, v2, 1.0), "below 1"),
        (("x", v1, "v20990101T000000.000000Z-abcdef", 0.5), "--treatment: no model version"),
        (("x", "nonsense", v2, 0.5), "--control: not a model version name"),
    ]:
        with pytest.raises(RecforgeError, match=message):
            book.start(*bad)
    with pytest.raises(RecforgeError, match="no version is published"):
        ExperimentBook(tmp_path).start("x", "current", "current", 0.5)
    with pytest.raises(RecforgeError, match="no experiment named"):
        book.stop("ghost")
    (book.path).write_text("{broken")
    with pytest.raises(RecforgeError, match="cannot be read"):
        book.all()
    book.path.unlink()


def test_assignment_is_sticky_and_follows_the_share():
    users = [f"u{n}" for n in range(20_000)]
    arms = [arm_of(u, "exp", 0.3) for u in users]
    assert arms == [arm_of(u, "exp", 0.3) for u in users]
    assert abs(arms.count("treatment") / len(users) - 0.3) < 0.015
    other = [arm_of(u, "another", 0.3) for u in users]
    agree = np.mean([a == b for a, b in zip(arms, other, strict=True)])
    assert abs(agree - (0.3**2 + 0.7**2)) < 0.015  # independent across experiment names


@pytest.mark.parametrize(
    ("n_c", "x_c", "n_t", "x_t"), [(1000, 100, 1000, 130), (5000, 40, 4000, 31), (300, 150, 310, 140)]
)
def test_compare_matches_scipy(n_c, x_c, n_t, x_t):
    out = compare(n_c, x_c, n_t, x_t)
    p_c, p_t = x_c / n_c, x_t / n_t
    pooled = (x_c + x_t) / (n_c + n_t)
    z = (p_t - p_c) / math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    assert out["p_value"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    chi2 = stats.chi2_contingency([[x_c, n_c - x_c], [x_t, n_t - x_t]], correction=False)
    assert out["p_value"] == pytest.approx(chi2.pvalue, rel=1e-6)  # the z-test is the 2x2 chi-square
    half = stats.norm.ppf(0.975) * math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    assert out["ci95"] == pytest.approx([p_t - p_c - half, p_t - p_c + half])
    assert out["difference"] == pytest.approx(p_t - p_c)


def test_verdict_rules():
    settings = ExperimentsConfig(min_users=100, alpha=0.01)
    assert verdict(compare(1000, 100, 1000, 150), settings)[0] == "treatment"
    assert verdict(compare(1000, 150, 1000, 100), settings)[0] == "control"
    winner, why = verdict(compare(1000, 100, 1000, 115), settings)
    assert winner is None and "no significant difference" in why
    winner, why = verdict(compare(99, 0, 5000, 4000), settings)
    assert winner is None and "not enough users" in why
    winner, why = verdict(compare(2000, 0, 2000, 9), settings)
    assert winner is None and "too few users with and without a hit" in why
    assert verdict(compare(0, 0, 0, 0), settings)[0] is None
    with pytest.raises(RecforgeError, match="metric"):
        verdict(compare(10, 1, 10, 2), ExperimentsConfig(metric="revenue"))


def record(home, rows):
    """rows of (recommendation_id, user, version, experiment, arm, items, hours after T0)"""
    writer = ImpressionWriter(ImpressionStore(home))
    for rid, user, version, experiment, arm, items, hour in rows:
        when = int((T0 + timedelta(hours=hour)).timestamp() * 1e6)
        writer.write([Impression(rid, user, None, version, "precomputed", experiment, arm, items, when)])
    writer.close()


def post(home, rows):
    """rows of (user, item, event type, hours after T0, recommendation_id)"""
    EventStore(home).append(
        pa.table(
            {
                "user_id": [r[0] for r in rows],
                "item_id": [r[1] for r in rows],
                "event_type": [r[2] for r in rows],
                "value": [1.0] * len(rows),
                "timestamp": [T0 + timedelta(hours=r[3]) for r in rows],
                "recommendation_id": [r[4] for r in rows],
            }
        )
    )


def test_report_counts_users_not_impressions_and_says_what_each_arm_served(versions, tmp_path):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(versions[0], home)
    v1, v2 = versions[1]
    book = ExperimentBook(home)
    book.start("ab", "current", v2, 0.5, now=T0)
    rows = []
    for n in range(1, 9):
        user = f"u{n}"
        arm = arm_of(user, "ab", 0.5)
        for j in range(n):  # user n comes n times: heavy users
            hour = n + j / 10
            version = v2 if arm == "treatment" else (v1 if hour < 5 else "v-next")  # a publish at 5
            rows.append((f"r{n}-{j}", user, version, "ab", arm, ["a", "b"], hour))
    rows.append(("outside", "u1", v1, None, None, ["a"], 1))
    record(home, rows)
    post(
        home,
        [
            ("u3", "a", "purchase", 3.05, "r3-0"),
            ("u3", "b", "view", 3.25, None),
            ("u4", "b", "view", 4.05, None),
        ],
    )
    config = load_config(environ={}, overrides={"home": str(home), "experiments": {"min_users": 1}})
    report = experiment_report(home, config, "ab", now=T0 + timedelta(hours=20))
    arms = report["arms"]
    assert arms["control"]["users"] + arms["treatment"]["users"] == 8
    assert arms["control"]["impressions"] + arms["treatment"]["impressions"] == sum(range(1, 9))
    clicked = {arm_of("u3", "ab", 0.5): {"u3"}, arm_of("u4", "ab", 0.5): {"u4"}}
    for arm in ("control", "treatment"):
        buyers = {"u3"} & clicked.get(arm, set())
        assert arms[arm]["click_users"] == len(clicked.get(arm, set()) | buyers)
        assert arms[arm]["convert_users"] == len(buyers)
    served = {arm: [(s["version"], s["impressions"]) for s in arms[arm]["served"]] for arm in arms}
    for arm in arms:  # each version with its impressions, in the order they were first served
        expected = {}
        for row in rows[:-1]:
            if row[4] == arm:
                expected[row[2]] = expected.get(row[2], 0) + 1
        assert served[arm] == list(expected.items())
    assert report["comparisons"]["click"]["control"]["users"] == arms["control"]["users"]
    assert report["winner"] is None and report["experiment"]["status"] == "running"
    assert report["published_now"] == v1


def test_aa_on_a_recorded_log_declares_a_winner_rarely(tmp_path):
    """Issue 18's A/A target, offline: 100 random re-splits of recorded users, a winner at most 5
    times (at alpha 0.01, about once is expected)."""
    rng = np.random.default_rng(4)
    rows, events = [], []
    for n in range(6_000):
        visits = 1 + rng.poisson(1.5)
        for j in range(visits):
            rid = f"r{n}-{j}"
            rows.append((rid, f"u{n}", "v1", None, None, ["a", "b", "c"], j))
            if rng.random() < 0.08:
                events.append((f"u{n}", "b", "purchase", j + 0.5, rid))
    record(tmp_path, rows)
    post(tmp_path, events)
    config = load_config(environ={}, overrides={"home": str(tmp_path)})
    result = aa_test(tmp_path, config, repetitions=100)
    assert result["users"] == 6_000 and 0.1 < result["hit_rate"] < 0.3
    assert result["winners"] <= 5 and result["no_winner"] >= 95
    p_values = np.asarray(result["p_values"])
    assert stats.kstest(p_values, "uniform").pvalue > 0.001  # p-values of a null look uniform
