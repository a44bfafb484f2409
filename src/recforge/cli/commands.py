"""The command modules; each exposes ``register(app: typer.Typer)``."""

from __future__ import annotations

from types import ModuleType

from recforge.cli import data, demo, info, pipeline

MODULES: list[ModuleType] = [info, data, pipeline, demo]
