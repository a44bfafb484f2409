"""A small home with everything the dashboard shows: events in several segments, two pipeline
runs that each published an ALS version, and a tuning study; used by the dashboard tests and by
``docs/screenshots.py``."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc

from recforge.config import Config, load_config
from recforge.data.generate import generate_events
from recforge.data.store import EventStore
from recforge.pipeline.runner import run_pipeline
from recforge.pipeline.store_tuning import tune_store

ADMIN_KEY = "admin-key-0123456789"
API_KEY = "write-key-0123456789"


def dashboard_config(home: Path, **serving: object) -> Config:
    overrides = {
        "home": str(home),
        "model": {"name": "als", "als": {"factors": 16, "iterations": 6, "random_state": 0}},
        "pipeline": {"gate_tolerance": 0.5, "k_users": 20, "k_items": 20, "k_popular": 50},
        "serving": {"admin_keys": [ADMIN_KEY], "api_keys": [API_KEY], "reload_poll_seconds": 0.2, **serving},
    }
    return load_config(environ={}, overrides=overrides)


def build_dashboard_home(home: Path, *, users: int = 500, items: int = 200, events: int = 20_000) -> Path:
    """Fill ``home`` (see the module docstring); returns it."""
    config = dashboard_config(home)
    table = generate_events(users=users, items=items, events=events, days=60, seed=7)
    stamps = table.column("timestamp")
    cut = pc.quantile(stamps.cast("int64"), 0.7)[0].as_py()
    early = pc.less(stamps.cast("int64"), cut)
    store = EventStore(home)
    store.append(table.filter(early))
    run_pipeline(home, config)
    late = table.filter(pc.invert(early))
    half = late.num_rows // 2
    store.append(late.slice(0, half))  # two more segments: the digest covers several
    store.append(late.slice(half))
    run_pipeline(home, config)
    tune_store(home, config, trials=4, study="als-small", show_progress=False)
    return home
