"""``recforge demo``: generate (or read) events, run the pipeline, show what it learned."""

from __future__ import annotations

from pathlib import Path

import typer

from recforge.cli.state import State


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        ctx: typer.Context,
        events: int = typer.Option(200_000, "--events", min=1, help="Synthetic events to generate."),
        users: int = typer.Option(10_000, "--users", min=1, help="Synthetic users."),
        items: int = typer.Option(2_000, "--items", min=2, help="Synthetic items."),
        days: float = typer.Option(90.0, "--days", help="Days the synthetic events span."),
        seed: int = typer.Option(0, "--seed", help="Random seed of the synthetic events."),
        data: Path | None = typer.Option(
            None, "--data", help="Use this event file instead (e.g. MovieLens u.data.gz, ratings.dat)."
        ),
        format: str | None = typer.Option(None, "--format", help="Format of --data (default: detected)."),
        catalog: Path | None = typer.Option(
            None, "--catalog", help="A catalog file for --data (e.g. MovieLens u.item.gz or movies.dat)."
        ),
        model: str | None = typer.Option(
            None,
            "--model",
            help="Model to train (default: als; with rating data, the best family the tuning finds).",
        ),
        tune: str = typer.Option(
            "1m", "--tune", help="With rating data: tune every model family this long first (0: no tuning)."
        ),
    ) -> None:
        """The whole loop on a fresh home: events -> ingest -> build -> train -> evaluate on a
        holdout -> publish, then sample recommendations and metrics against popularity. Rating
        data (MovieLens) get no time decay, a per-user holdout and a tuned model. The home is
        ./recforge_demo unless --home is given; it is wiped first (only if empty or made by an
        earlier demo)."""
        from rich.console import Console

        from recforge.demo import DEFAULT_HOME, DemoSettings, run_demo

        state: State = ctx.obj
        home = ctx.find_root().params.get("home") or DEFAULT_HOME
        settings = DemoSettings(
            events=events,
            users=users,
            items=items,
            days=days,
            seed=seed,
            data=data,
            format=format,
            items_file=catalog,
            model=model,
            tune=tune,
        )
        run_demo(Path(home), state.config, settings, Console())
