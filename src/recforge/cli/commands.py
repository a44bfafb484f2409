"""The command modules; each exposes ``register(app: typer.Typer)``."""

from __future__ import annotations

from types import ModuleType

from recforge.cli import data, demo, info, ingest, items, models, pipeline, serve, tune

MODULES: list[ModuleType] = [info, data, ingest, items, pipeline, tune, models, serve, demo]
