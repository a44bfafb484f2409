"""``recforge dashboard``: the web dashboard over a home, without serving API traffic."""

from __future__ import annotations

import typer

from recforge.cli.state import State


def register(app: typer.Typer) -> None:
    @app.command("dashboard")
    def dashboard(
        ctx: typer.Context,
        host: str | None = typer.Option(None, "--host", help="Address (default: serving.host)."),
        port: int = typer.Option(8050, "--port", help="Port."),
        metrics_url: str | None = typer.Option(
            None, "--metrics-url", help="A server's /metrics URL, for its traffic on the Overview page."
        ),
        log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
    ) -> None:
        """Serve the dashboard (Overview, Pipeline, Models, Users, Items, Tuning) under /ui on a
        home, without the API. Publishing and rolling back need an admin key
        (RECFORGE_ADMIN_KEYS); the same pages are under /ui of `recforge serve`."""
        import uvicorn

        from recforge.serving.dashboard import create_dashboard_app

        state: State = ctx.obj
        config = state.config
        address = host or config.serving.host
        typer.echo(f"dashboard of {config.home} on http://{address}:{port}/ui/", err=True)
        uvicorn.run(
            create_dashboard_app(config, metrics_url=metrics_url),
            host=address,
            port=port,
            log_level=log_level,
        )
