"""The command modules; each exposes ``register(app: typer.Typer)``."""

from __future__ import annotations

from types import ModuleType

from recforge.cli import dashboard, data, demo, info, ingest, items, models, online, pipeline, serve, tune

MODULES: list[ModuleType] = [
    info,
    data,
    ingest,
    items,
    pipeline,
    tune,
    models,
    serve,
    online,
    dashboard,
    demo,
]
