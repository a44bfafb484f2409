import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from recforge.config import WeightingConfig
from recforge.weighting import DEFAULT_HALF_LIFE_DAYS, DEFAULT_WEIGHTS, Weighting, decay

DAY = 86_400.0
DAY_US = 86_400_000_000
T0 = datetime(2024, 1, 31, tzinfo=UTC)


def us(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_decay_halves_every_half_life():
    np.testing.assert_allclose(decay(np.array([0, DAY, 2 * DAY, 3 * DAY]), DAY), [1, 0.5, 0.25, 0.125])


def test_decay_off_and_future_events():
    np.testing.assert_array_equal(decay(np.array([5.0, 1e9]), None), [1.0, 1.0])
    # an event newer than the reference time counts as age 0, never more than its weight
    np.testing.assert_array_equal(decay(np.array([-10 * DAY]), DAY), [1.0])
    for bad in (0.0, -DAY, np.inf):
        with pytest.raises(ValueError, match="half_life"):
            decay(np.array([1.0]), bad)


def test_type_weights_with_default_for_unlisted():
    weighting = Weighting({"view": 1, "purchase": 16})
    w = weighting.type_weights(np.array([0, 1, 2, 1]), ["view", "purchase", "share"])
    np.testing.assert_array_equal(w, [1, 16, 1, 16])
    assert Weighting().type_weights(np.array([], dtype=np.int32), []).shape == (0,)


def test_strength_hand_computed():
    # purchase (16) two half-lives old, value 1 -> 4; view (1) fresh, value 3 -> 3; share
    # (not listed: 1) one half-life old, value 2 -> 1
    weighting = Weighting({"view": 1.0, "purchase": 16.0}, half_life_days=10.0, reference_time=T0)
    codes = np.array([1, 0, 2])
    times = np.array([us(T0) - 20 * DAY_US, us(T0), us(T0) - 10 * DAY_US])
    s = weighting.strength(codes, ["view", "purchase", "share"], np.array([1.0, 3.0, 2.0]), times)
    np.testing.assert_allclose(s, [4.0, 3.0, 1.0])
    flat = replace(weighting, half_life_days=None).strength(
        codes, ["view", "purchase", "share"], np.array([1.0, 3.0, 2.0]), times
    )
    np.testing.assert_array_equal(flat, [16.0, 3.0, 2.0])


def test_decay_needs_a_reference_time():
    codes, names, values, times = np.array([0]), ["view"], np.array([1.0]), np.array([us(T0)])
    with pytest.raises(ValueError, match="reference time"):
        Weighting().strength(codes, names, values, times)
    # without decay, or without events, the reference does not matter
    assert Weighting(half_life_days=None).strength(codes, names, values, times).tolist() == [1.0]
    assert Weighting().strength(codes[:0], names, values[:0], times[:0]).shape == (0,)


def test_as_of_is_the_reference_unless_one_is_configured():
    when = T0 + timedelta(microseconds=123_457)  # microseconds survive exactly
    applied = Weighting().as_of(when)
    assert applied.reference_us == us(T0) + 123_457
    assert applied.reference_time == when
    given = Weighting(reference_time=T0)
    assert given.as_of(when) is given
    assert Weighting().as_of(None).reference_time is None  # nothing to measure from: left unset


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, np.inf, np.nan, True, "30"])
def test_half_life_is_positive_and_finite_or_none(bad):
    with pytest.raises(ValueError, match="half_life_days must be a positive, finite number of days, or None"):
        Weighting(half_life_days=bad)


def test_none_is_no_decay():
    weighting = Weighting(half_life_days=None)
    old = np.array([us(T0) - 10_000 * DAY_US, us(T0)])
    np.testing.assert_array_equal(weighting.strength(np.array([0, 0]), ["view"], np.ones(2), old), [1.0, 1.0])


def test_weights_are_checked_copied_and_read_only():
    given = {"view": 2, "cart": np.float32(3.5)}
    weighting = Weighting(given)
    given["view"] = 99
    assert dict(weighting.weights) == {"view": 2.0, "cart": 3.5}
    assert all(type(w) is float for w in weighting.weights.values())
    with pytest.raises(TypeError):
        weighting.weights["view"] = 5.0  # type: ignore[index]
    for bad in (np.nan, np.inf, "1", None):
        with pytest.raises(ValueError, match="weight of event type 'view'"):
            Weighting({"view": bad})  # type: ignore[dict-item]


def test_value_semantics():
    a = Weighting({"view": 1.0}, 7.0, T0)
    b = Weighting({"view": 1}, 7, T0.astimezone(timezone(timedelta(hours=2))))
    assert a == b and hash(a) == hash(b)
    assert b.reference_time is not None and b.reference_time.tzinfo == UTC
    assert Weighting(reference_time=datetime(2024, 1, 31)).reference_time == T0  # naive: UTC
    assert pickle.loads(pickle.dumps(a)) == a
    assert a != replace(a, half_life_days=None)


def test_defaults_are_the_configs_defaults():
    """Drift guard: the config's [weighting] defaults are the weighting module's."""
    assert Weighting() == WeightingConfig().value()
    assert Weighting().weights == DEFAULT_WEIGHTS
    assert Weighting().half_life_days == DEFAULT_HALF_LIFE_DAYS == WeightingConfig().half_life_days
    assert Weighting().reference_time is None


def test_the_config_spellings_are_translated_in_one_place():
    section = WeightingConfig(weights={"view": 2.0}, half_life_days=0.0, reference_time="2024-01-31")
    assert section.value() == Weighting({"view": 2.0}, None, T0)
    assert WeightingConfig.from_value(section.value()) == WeightingConfig(
        weights={"view": 2.0}, half_life_days=0.0, reference_time="2024-01-31T00:00:00Z"
    )
    assert WeightingConfig.from_value(Weighting()) == WeightingConfig()


@pytest.mark.parametrize(
    "weighting",
    [
        Weighting(),
        Weighting({"view": 2.0, "share": 0.5}, None, T0 + timedelta(microseconds=7)),
        Weighting({}, 3.5, T0),
    ],
)
def test_describe_round_trip(weighting):
    description = weighting.describe()
    assert set(description) == {"reference_time", "half_life_days", "weights"}
    assert Weighting.from_description(description) == weighting


def test_describe_records_what_builds_always_recorded():
    assert Weighting({"view": 2.0}, None, T0).describe() == {
        "reference_time": "2024-01-31T00:00:00Z",
        "half_life_days": 0.0,
        "weights": {"view": 2.0},
    }
    assert Weighting().describe()["reference_time"] is None
    assert Weighting().describe()["half_life_days"] == DEFAULT_HALF_LIFE_DAYS
