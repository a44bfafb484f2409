"""Serving fixtures: a home with generated events and a published model version, built once
per session and copied for each test that changes it."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recforge.artifacts import ModelRegistry
from recforge.config import Config, load_config
from recforge.data.build import build_interactions
from recforge.data.generate import generate_events
from recforge.data.store import EventStore
from recforge.models.base import Recommender
from recforge.precompute import precompute
from tests.serving.factors import ToyFactors

API_KEY = "test-key-0123456789"
ADMIN_KEY = "admin-key-9876543210"
N_USERS, N_ITEMS, N_EVENTS = 300, 120, 15_000
#: The builds' as-of time: the day after the generated events end (90 days from 2024-01-01).
AS_OF = datetime(2024, 3, 31, tzinfo=UTC)


def publish_version(home: Path, config: Config, model: Recommender, *, publish: bool = True) -> str:
    """Fit ``model`` on the events under ``home`` and store (and publish) it as a version."""
    interactions = build_interactions(EventStore(home), config, as_of=AS_OF)
    model.fit(interactions)
    lists = precompute(model, interactions, k_users=50, k_items=30, k_popular=60)
    info = interactions.info
    registry = ModelRegistry(home)
    version = registry.create(
        model,
        lists,
        data_window={key: info[key] for key in ("first", "last", "events", "as_of", "read_at")},
        metrics={"ndcg@10": 0.1},
    )
    if publish:
        registry.publish(version.version)
    return version.version


def make_config(home: Path, **serving) -> Config:
    overrides = {"home": str(home), "serving": {"api_keys": [API_KEY], "reload_poll_seconds": 0.1, **serving}}
    return load_config(environ={}, overrides=overrides)


@pytest.fixture(scope="session")
def template_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("serving-template")
    EventStore(home).append(generate_events(users=N_USERS, items=N_ITEMS, events=N_EVENTS, seed=3))
    publish_version(home, make_config(home), ToyFactors(factors=8))
    return home


@pytest.fixture
def home(template_home, tmp_path) -> Path:
    """A private copy of the template home (events and one published ToyFactors version)."""
    target = tmp_path / "home"
    shutil.copytree(template_home, target, symlinks=True)
    return target
