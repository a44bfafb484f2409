"""``recforge generate | build | events stats | events compact``: the data commands (``ingest``
is in :mod:`recforge.cli.ingest`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from recforge.cli.state import State


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate(
        out: Path = typer.Option(..., "--out", help="Output file: .csv, .jsonl or .parquet (+ .gz)."),
        users: int = typer.Option(10_000, "--users", help="Number of users."),
        items: int = typer.Option(2_000, "--items", help="Number of items."),
        events: int = typer.Option(1_000_000, "--events", help="Number of events."),
        days: float = typer.Option(90.0, "--days", help="Days the events span."),
        seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same file)."),
        categories: int | None = typer.Option(
            None, "--categories", min=1, help="Item categories (default: about sqrt(items) / 2)."
        ),
        catalog: Path | None = typer.Option(
            None, "--catalog", help="Where the items' catalog goes (default: <out>.items.csv beside it)."
        ),
        new_items: int = typer.Option(
            0, "--new-items", min=0, help="Catalog items without events (new arrivals)."
        ),
        sold_out: float = typer.Option(0.1, "--sold-out", help="Share of catalog items unavailable."),
    ) -> None:
        """Generate synthetic marketplace events (views, likes, carts, purchases) and the catalog
        of their items (categories, brands, prices, created_at, a share sold out)."""
        import pyarrow.csv as pcsv

        from recforge._progress import stage
        from recforge.catalog.synthetic import generate_catalog
        from recforge.data.generate import generate_events, write_events

        started = time.perf_counter()
        with stage(f"generating {events:,} events"):
            table = generate_events(
                users=users, items=items, events=events, days=days, seed=seed, categories=categories
            )
        with stage(f"writing {out}"):
            write_events(table, out)
        stem = out.name.removesuffix(".gz").rsplit(".", 1)[0]
        catalog = catalog or out.with_name(f"{stem}.items.csv")
        items_table = generate_catalog(
            items, seed, categories, new_items=new_items, sold_out=sold_out, days=days
        )
        pcsv.write_csv(items_table, catalog)
        took = time.perf_counter() - started
        typer.echo(
            f"wrote {table.num_rows:,} events ({users:,} users, {items:,} items) to {out} and "
            f"{items_table.num_rows:,} items to {catalog} in {took:.1f} s"
        )

    @app.command("build")
    def build(
        ctx: typer.Context,
        start: str | None = typer.Option(None, "--start", help="Only events at or after (ISO 8601)."),
        end: str | None = typer.Option(None, "--end", help="Only events before (ISO 8601)."),
    ) -> None:
        """Build the user x item interaction matrix from the stored events (weights and time
        decay from [weighting] in the config) into <home>/interactions."""
        from recforge._progress import stage
        from recforge._time import parse_time
        from recforge.data.build import build_interactions, save_interactions
        from recforge.data.store import EventStore

        state: State = ctx.obj
        started = time.perf_counter()
        with stage("building interactions from the event store"):
            interactions = build_interactions(
                EventStore(state.home),
                state.config,
                start=parse_time(start) if start else None,
                end=parse_time(end) if end else None,
            )
        with stage("saving the build"):
            path = save_interactions(interactions, state.home)
        took = time.perf_counter() - started
        typer.echo(
            f"built {interactions.n_users:,} users x {interactions.n_items:,} items, "
            f"{interactions.nnz:,} pairs from {interactions.info['events']:,} events "
            f"into {path} ({took:.1f} s)"
        )

    events = typer.Typer(help="Inspect and maintain the event store.", no_args_is_help=True)
    app.add_typer(events, name="events")

    @events.command("stats")
    def stats(
        ctx: typer.Context,
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Events, users, items, time span and segments of the event store."""
        from recforge.data.store import EventStore

        state: State = ctx.obj
        result = EventStore(state.home).stats()
        if as_json:
            typer.echo(json.dumps(result, sort_keys=True))
            return
        for key in ("events", "users", "items", "first", "last", "segments", "bytes"):
            value = result[key]
            typer.echo(f"{key:>10}: {value:,}" if isinstance(value, int) else f"{key:>10}: {value}")
        for name, count in result["event_types"].items():
            typer.echo(f"{name:>10}: {count:,} events")

    @events.command("compact")
    def compact(
        ctx: typer.Context,
        target_rows: int | None = typer.Option(
            None,
            "--target-rows",
            help="Merge into segments of up to this many rows (default: data.compact_rows).",
        ),
    ) -> None:
        """Merge small adjacent segments of the event store (safe beside running ingests)."""
        from recforge.data.store import EventStore

        state: State = ctx.obj
        rows = target_rows if target_rows is not None else state.config.data.compact_rows
        result = EventStore(state.home).compact(target_rows=rows)
        typer.echo(
            f"merged {result.merged} segments into {result.written}; "
            f"{result.before} segments before, {result.after} after"
        )
