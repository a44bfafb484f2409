"""Reweighter: rebuilding r_ui under other weights equals building from the events again."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from recforge.data.generate import generate_events
from recforge.data.interactions import Interactions
from recforge.data.reweighting import Reweighter
from recforge.data.vocabulary import Vocabulary
from recforge.evaluation import Range, WeightingSpace
from recforge.weighting import Weighting


@pytest.fixture(scope="module")
def events():
    return generate_events(users=120, items=60, events=4_000, days=20, seed=5)


def same(a: Interactions, b: Interactions) -> None:
    assert a.users == b.users and a.items == b.items
    np.testing.assert_array_equal(a.matrix.indptr, b.matrix.indptr)
    np.testing.assert_array_equal(a.matrix.indices, b.matrix.indices)
    np.testing.assert_allclose(a.matrix.data, b.matrix.data, rtol=1e-6)
    assert a.info["weights"] == b.info["weights"] and a.info["half_life_days"] == b.info["half_life_days"]


@pytest.mark.parametrize(
    "weighting",
    [
        None,
        Weighting({"view": 1.0, "like": 2.0, "cart": 50.0, "purchase": 0.5}, 3.0),
        Weighting({"view": 0.0, "like": 1.0}, None),  # views weigh nothing: their pairs drop out
        Weighting({}, None),
    ],
)
def test_a_rebuild_equals_a_build_from_the_events(events, weighting):
    reweighter = Reweighter(events)  # as of the newest event, by default
    newest = events.column("timestamp").to_pylist()[-1]
    assert reweighter.as_of == newest
    expected = Interactions.from_events(events, weighting, as_of=newest)
    same(reweighter.build(weighting), expected)
    later = datetime(2024, 6, 1, tzinfo=UTC)
    same(
        Reweighter(events, as_of=later).build(weighting),
        Interactions.from_events(events, weighting, as_of=later),
    )


def test_given_vocabularies_and_reference_time_are_kept(events):
    users = Vocabulary.from_values(events.column("user_id")[:500])  # some users unknown
    items = Vocabulary.from_values(events.column("item_id"))
    reference = datetime(2030, 1, 1, tzinfo=UTC)
    weighting = Weighting({"cart": 3.0}, 7.0, reference_time=reference)
    reweighter = Reweighter(events, users=users, items=items)
    expected = Interactions.from_events(events, weighting, users=users, items=items)
    rebuilt = reweighter.build(weighting)
    same(rebuilt, expected)
    assert rebuilt.info["reference_time"] == expected.info["reference_time"] == "2030-01-01T00:00:00Z"
    assert rebuilt.info["dropped"] == expected.info["dropped"] > 0


def test_event_types_and_span(events):
    reweighter = Reweighter(events)
    types = events.column("event_type").to_numpy(zero_copy_only=False)
    counts = {t: int(np.count_nonzero(types == t)) for t in set(types)}
    assert reweighter.event_types == sorted(counts, key=lambda t: -counts[t])
    assert 19.0 < reweighter.span_days <= 20.0


def test_the_weighting_space(events):
    reweighter = Reweighter(events)
    weights = {"view": 1.0, "like": 4.0, "cart": 8.0, "purchase": 0.0}
    space = WeightingSpace(reweighter, Weighting(weights, 30.0))
    top = reweighter.event_types[0]
    assert top == "view"  # the most frequent type keeps its weight; purchase (0) stays 0
    assert set(space.search_space) == {"half_life_days", "weight.like", "weight.cart"}
    assert space.search_space["weight.cart"] == Range(0.8, 80.0, log=True)
    assert space.current() == {"half_life_days": 30.0, "weight.like": 4.0, "weight.cart": 8.0}
    drawn = {"half_life_days": 2.0, "weight.cart": 20.0}
    assert space.settings(drawn) == Weighting({**weights, "cart": 20.0}, 2.0)
    rebuilt = Interactions.from_events(
        events, Weighting({**weights, "cart": 20.0}, 2.0), as_of=reweighter.as_of
    )
    same(space.build(drawn), rebuilt)
    # no decay in use: the longest half-life is the nearest point
    assert WeightingSpace(reweighter, Weighting(weights, None), tune_weights=False).current() == {
        "half_life_days": space.search_space["half_life_days"].high
    }
