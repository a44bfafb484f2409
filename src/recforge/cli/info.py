"""``recforge version`` and ``recforge config``: what is installed and what is configured."""

from __future__ import annotations

import json

import typer

from recforge._version import __version__


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version() -> None:
        """Print recforge's version."""
        typer.echo(__version__)

    @app.command("config")
    def show_config(ctx: typer.Context) -> None:
        """Print the effective configuration (defaults, file, environment) as JSON."""
        config = ctx.obj.config.to_dict()
        serving = config.get("serving")
        for key in ("api_keys", "admin_keys"):
            if isinstance(serving, dict) and serving.get(key):
                serving[key] = ["***"] * len(serving[key])
        typer.echo(json.dumps(config, indent=2, sort_keys=True))
