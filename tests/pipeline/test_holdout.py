"""Durations, holdout specs and the temporal split the pipeline builds on."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow.compute as pc
import pytest

from recforge.config import load_config
from recforge.errors import RecforgeError
from recforge.pipeline.holdout import (
    Holdout,
    holdout_from_config,
    parse_duration,
    parse_holdout,
    split_events,
)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), ("2d", 172800), (" 1M ", 60)]
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "10 minutes", "0", "-5m", "5w"])
def test_parse_duration_rejects(text):
    with pytest.raises(RecforgeError):
        parse_duration(text)


def test_parse_holdout():
    assert parse_holdout("0.2") == Holdout(fraction=0.2)
    assert parse_holdout("15%") == Holdout(fraction=0.15)
    assert parse_holdout("7d") == Holdout(days=7.0)
    assert parse_holdout("12h") == Holdout(days=0.5)
    assert parse_holdout("2024-01-20") == Holdout(at=datetime(2024, 1, 20, tzinfo=UTC))
    for bad in ("1.5", "0", "150%", "yesterday"):
        with pytest.raises(RecforgeError):
            parse_holdout(bad)


def test_holdout_from_config_prefers_days():
    assert holdout_from_config(load_config(environ={})) == Holdout(fraction=0.1)
    config = load_config(environ={}, overrides={"pipeline": {"holdout_days": 3}})
    assert holdout_from_config(config) == Holdout(days=3.0)


def test_split_events_by_fraction_days_and_time(events):
    ts = events.column("timestamp")
    split = split_events(events, Holdout(fraction=0.1), load_config(environ={}))
    assert split.test_mask.mean() == pytest.approx(0.1, abs=0.01)
    newest = pc.max(ts).as_py()
    split = split_events(events, Holdout(days=3), load_config(environ={}))
    cut = newest - timedelta(days=3)
    expected = np.asarray(pc.greater_equal(ts, cut).to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(split.test_mask, expected)
    with pytest.raises(RecforgeError, match="leaves no events after"):
        split_events(events, Holdout(at=newest + timedelta(days=1)), load_config(environ={}))
    with pytest.raises(RecforgeError, match="leaves no events before"):
        split_events(events, Holdout(days=1000), load_config(environ={}))
