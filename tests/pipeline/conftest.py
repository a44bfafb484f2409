"""Small generated marketplaces and homes for the pipeline tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recforge.config import Config, load_config
from recforge.data.generate import generate_events, write_events
from tests.conftest import REPO
from tests.pipeline import doubles  # noqa: F401 - registers the test models

GOOD = "test-cooccurrence"
BAD = "test-antipopular"


@pytest.fixture(scope="session")
def events() -> pa.Table:
    """20,000 events, 400 users, 150 items, 30 days: a pipeline run takes about a second."""
    return generate_events(users=400, items=150, events=20_000, days=30, seed=3)


def make_config(home: Path, model: str = GOOD, **pipeline: Any) -> Config:
    settings = {"k_users": 20, "k_items": 10, "k_popular": 50, **pipeline}
    return load_config(
        environ={}, overrides={"home": str(home), "model": {"name": model}, "pipeline": settings}
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def drop(home: Path, table: pa.Table, name: str = "events.parquet") -> Path:
    """Put an event file into the home's inbox: written under a hidden name, then renamed, as
    the inbox expects (a running scheduler never sees half a file)."""
    final = home / "inbox" / name
    partial = write_events(table, final.with_name("." + name))
    partial.rename(final)
    return final


def before(table: pa.Table, fraction: float) -> tuple[pa.Table, pa.Table]:
    """The events before / from the time quantile ``fraction`` (the generator sorts by time)."""
    n = int(table.num_rows * fraction)
    cut = table.column("timestamp")[n]
    early = pc.less(table.column("timestamp"), cut)
    return table.filter(early), table.filter(pc.invert(early))


def cli_env() -> dict[str, str]:
    """Environment of a ``recforge`` subprocess that sees ``src`` and the test models."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECFORGE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.pipeline.doubles", *args]
