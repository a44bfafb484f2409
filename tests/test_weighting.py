import numpy as np
import pytest

from recforge.weighting import confidence, decay, event_strength, type_weights

DAY = 86_400.0


def test_decay_halves_every_half_life():
    np.testing.assert_allclose(decay(np.array([0, DAY, 2 * DAY, 3 * DAY]), DAY), [1, 0.5, 0.25, 0.125])


def test_decay_off_and_future_events():
    np.testing.assert_array_equal(decay(np.array([5.0, 1e9]), None), [1.0, 1.0])
    np.testing.assert_array_equal(decay(np.array([5.0]), np.inf), [1.0])
    # an event newer than the reference time counts as age 0, never more than its weight
    np.testing.assert_array_equal(decay(np.array([-10 * DAY]), DAY), [1.0])
    with pytest.raises(ValueError, match="half_life"):
        decay(np.array([1.0]), 0.0)


def test_type_weights_with_default_for_unlisted():
    w = type_weights(np.array([0, 1, 2, 1]), ["view", "purchase", "share"], {"view": 1, "purchase": 16})
    np.testing.assert_array_equal(w, [1, 16, 1, 16])


def test_event_strength_hand_computed():
    # purchase (16) two half-lives old, value 1 -> 4; view (1) fresh, value 3 -> 3
    s = event_strength(
        np.array([16.0, 1.0]), np.array([1.0, 3.0]), np.array([0.0, 20 * DAY]), 20 * DAY, 10 * DAY
    )
    np.testing.assert_allclose(s, [4.0, 3.0])


def test_confidence():
    r = np.array([0.0, 1.0, 2.5], dtype=np.float32)
    c = confidence(r, alpha=2.0)
    assert c.dtype == np.float32
    np.testing.assert_allclose(c, [1.0, 3.0, 6.0])
