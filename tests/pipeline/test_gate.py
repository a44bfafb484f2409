"""The gate's rule on numbers (the pipeline-level gate tests are in test_runs.py)."""

import math

import pytest

from recforge.pipeline.gate import GateDecision, decide


def test_accepts_a_candidate_above_popularity_and_within_tolerance():
    d = decide(0.30, 0.10, 0.31, tolerance=0.05)
    assert d.accepted and "passes" in d.reason
    assert [c["check"] for c in d.checks] == ["above_popularity", "vs_published"]
    assert d.checks[1]["floor"] == pytest.approx(0.2945)


def test_tolerance_boundary_is_inclusive():
    assert decide(0.95, 0.1, 1.0, tolerance=0.05).accepted
    assert not decide(0.9499, 0.1, 1.0, tolerance=0.05).accepted
    assert not decide(0.99, 0.1, 1.0, tolerance=0.0).accepted


def test_rejects_below_popularity_with_the_numbers():
    d = decide(0.10, 0.12, None, tolerance=0.05)
    assert not d.accepted
    assert d.reason == "ndcg@10 0.1000 is not above popularity's 0.1200"
    assert decide(0.12, 0.12, None, tolerance=0.05).accepted is False  # strictly above


def test_rejects_worse_than_published_and_names_both_failures():
    d = decide(0.10, 0.12, 0.30, tolerance=0.05, metric="ndcg@5")
    assert not d.accepted
    assert "not above popularity's 0.1200" in d.reason
    assert "below (1 - 0.05) x the published model's 0.3000 = 0.2850" in d.reason
    assert d.reason.startswith("ndcg@5")


def test_popular_candidate_skips_the_popularity_check():
    d = decide(0.12, 0.12, None, tolerance=0.05, candidate_is_popular=True)
    assert d.accepted and d.checks[0]["skipped"]
    assert not decide(0.12, 0.12, 0.3, tolerance=0.05, candidate_is_popular=True).accepted


def test_unmeasured_candidate_is_rejected_and_missing_scores_are_skipped():
    assert not decide(math.nan, 0.1, None, tolerance=0.05).accepted
    d = decide(0.2, None, math.nan, tolerance=0.05)
    assert d.accepted and all("skipped" in c for c in d.checks)
    with pytest.raises(ValueError, match="tolerance"):
        decide(0.2, 0.1, None, tolerance=1.0)


def test_decision_round_trips():
    d = decide(0.2, 0.1, 0.25, tolerance=0.1)
    assert GateDecision.from_dict(d.to_dict()) == d
