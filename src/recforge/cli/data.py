"""``recforge generate | build | events stats | events compact | events delete``: the data
commands (``ingest`` is in :mod:`recforge.cli.ingest`)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
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
        """Generate synthetic marketplace events (views, likes, carts, purchases), the catalog of
        their items (categories, brands, prices, created_at, a share sold out), and the true
        tastes the events were drawn from (EVENTS.tastes.npz, read by recforge simulate)."""
        import pyarrow.csv as pcsv

        from recforge._progress import stage
        from recforge.catalog.synthetic import generate_catalog
        from recforge.data.generate import generate_with_tastes, tastes_path, write_events

        started = time.perf_counter()
        with stage(f"generating {events:,} events"):
            table, tastes = generate_with_tastes(
                users=users, items=items, events=events, days=days, seed=seed, categories=categories
            )
        with stage(f"writing {out}"):
            write_events(table, out)
            sidecar = tastes.save(tastes_path(out))
        stem = out.name.removesuffix(".gz").rsplit(".", 1)[0]
        catalog = catalog or out.with_name(f"{stem}.items.csv")
        items_table = generate_catalog(
            items, seed, categories, new_items=new_items, sold_out=sold_out, days=days
        )
        pcsv.write_csv(items_table, catalog)
        took = time.perf_counter() - started
        typer.echo(
            f"wrote {table.num_rows:,} events ({users:,} users, {items:,} items) to {out}, "
            f"{items_table.num_rows:,} items to {catalog} and the true tastes to {sidecar} in {took:.1f} s"
        )

    @app.command("build")
    def build(
        ctx: typer.Context,
        start: str | None = typer.Option(None, "--start", help="Only events at or after (ISO 8601)."),
        end: str | None = typer.Option(None, "--end", help="Only events before (ISO 8601)."),
        as_of: str | None = typer.Option(
            None,
            "--as-of",
            help="Build as of this time (ISO 8601; default now): ages are measured from it, later "
            "events are left out.",
        ),
    ) -> None:
        """Build the user x item interaction matrix from the stored events (weights and time
        decay from [weighting] in the config, as of now or --as-of) into <home>/interactions."""
        from recforge._progress import stage
        from recforge._time import parse_time
        from recforge.data.build import age_days, build_interactions, save_interactions
        from recforge.data.store import EventStore

        state: State = ctx.obj
        started = time.perf_counter()
        when = parse_time(as_of) if as_of else datetime.now(UTC)
        with stage("building interactions from the event store"):
            interactions = build_interactions(
                EventStore(state.existing_home()),
                state.config,
                start=parse_time(start) if start else None,
                end=parse_time(end) if end else None,
                as_of=when,
            )
        with stage("saving the build"):
            path = save_interactions(interactions, state.home)
        took = time.perf_counter() - started
        typer.echo(
            f"built {interactions.n_users:,} users x {interactions.n_items:,} items, "
            f"{interactions.nnz:,} pairs from {interactions.info['events']:,} events "
            f"as of {interactions.info['as_of']} into {path} ({took:.1f} s)"
        )
        half_life = state.config.weighting.value().half_life_days
        stale = age_days(interactions, when)
        if half_life is not None and stale > 10 * half_life:
            typer.echo(
                f"note: the newest event is {stale:,.0f} days before the as-of time "
                f"({stale / half_life:,.0f} half-lives): every weight is below "
                f"{0.5 ** (stale / half_life):.1e} of its full value; to build as of the data's end, "
                f"give --as-of {interactions.info['last']}",
                err=True,
            )
        vanished = interactions.info.get("vanished")
        if vanished:
            typer.echo(f"note: {vanished:,} pairs decayed below float32's range and were left out", err=True)

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
        result = EventStore(state.existing_home()).stats()
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
        result = EventStore(state.existing_home()).compact(target_rows=rows)
        typer.echo(
            f"merged {result.merged} segments into {result.written}; "
            f"{result.before} segments before, {result.after} after"
            + (f"; {result.erased:,} erased events removed from disk" if result.erased else "")
        )

    @events.command("delete")
    def delete(
        ctx: typer.Context,
        user: str = typer.Option(..., "--user", help="The user whose events are erased."),
        item: str | None = typer.Option(None, "--item", help="Only the events on this item."),
        before: str | None = typer.Option(
            None, "--before", help="Only the events stamped before this time (ISO 8601)."
        ),
    ) -> None:
        """Erase a user's events (right to erasure): hidden from every read and build at once,
        removed from disk by `recforge events compact`; servers stop serving the user's fresh
        events and precomputed list."""
        from recforge._time import parse_time
        from recforge.data.store import EventStore

        state: State = ctx.obj
        store = EventStore(state.home)
        before_events = store.stats()["events"]
        stone = store.tombstones.add(
            user,
            item,
            parse_time(before) if before else None,
            max_future_seconds=state.config.data.max_future_seconds,
        )
        erased = before_events - store.stats()["events"]
        scope = f" on item {item!r}" if item is not None else ""
        typer.echo(
            f"erased {erased:,} events of user {user!r}{scope} stamped before {stone.to_dict()['before']} "
            f"(deletion {stone.id}); `recforge events compact` removes them from disk"
        )
