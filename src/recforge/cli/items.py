"""``recforge items ingest | show | stats``: the catalog, and ``recforge export``: lists as files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from recforge.cli.state import State

ITEM_FORMAT_HELP = "csv, tsv, jsonl, parquet, ml-item (MovieLens u.item), ml-movies (movies.dat)"


def register(app: typer.Typer) -> None:
    items = typer.Typer(help="The catalog: item categories, availability, attributes.", no_args_is_help=True)
    app.add_typer(items, name="items")

    @items.command("ingest")
    def ingest(
        ctx: typer.Context,
        paths: list[Path] = typer.Argument(..., help="Item files (gzip is read transparently)."),
        format: str | None = typer.Option(None, "--format", help=f"Input format: {ITEM_FORMAT_HELP}."),
        map_: str | None = typer.Option(
            None, "--map", help="Column mapping FIELD=COLUMN,..., e.g. item_id=sku,categories=cats."
        ),
        strict: bool = typer.Option(False, "--strict", help="Any bad row stores nothing from the file."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON report per file."),
    ) -> None:
        """Upsert items into the catalog: a record changes only the fields it has.

        Bad rows go to <home>/quarantine/ with their line number and reason; each file is stored
        as one transaction (all or nothing)."""
        from recforge.catalog import CatalogStore
        from recforge.catalog.ingest import ingest_items
        from recforge.catalog.readers import parse_item_mapping

        state: State = ctx.obj
        store = CatalogStore(state.home)
        mapping = parse_item_mapping(map_)
        for path in paths:
            started = time.perf_counter()
            report = ingest_items(path, store, state.config, format=format, mapping=mapping, strict=strict)
            took = time.perf_counter() - started
            if as_json:
                typer.echo(json.dumps({**report.to_dict(), "seconds": round(took, 3)}))
                continue
            typer.echo(
                f"{path}: {report.upserted:,} items upserted ({report.new:,} new), "
                f"{report.rejected:,} rejected ({report.format}, {took:.1f} s)"
            )
            if report.quarantine:
                typer.echo(f"  rejected rows: {report.quarantine}")

    @items.command("show")
    def show(ctx: typer.Context, item_id: str = typer.Argument(..., help="The item's id.")) -> None:
        """Print an item's record as JSON."""
        from recforge.catalog import CatalogStore
        from recforge.errors import RecforgeError

        state: State = ctx.obj
        row = CatalogStore(state.home).get(item_id)
        if row is None:
            raise RecforgeError(f"no item {item_id!r} in the catalog under {state.home}")
        typer.echo(json.dumps(row.to_dict(), ensure_ascii=False, sort_keys=True))

    @items.command("stats")
    def stats(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Items, available items, and items per category."""
        from recforge.catalog import CatalogStore

        state: State = ctx.obj
        result = CatalogStore(state.home).stats()
        if as_json:
            typer.echo(json.dumps(result, sort_keys=True))
            return
        typer.echo(f"{'items':>10}: {result['items']:,}")
        typer.echo(f"{'available':>10}: {result['available']:,}")
        for name, count in sorted(result["categories"].items(), key=lambda kv: (-kv[1], kv[0])):
            typer.echo(f"{name:>10}: {count:,} items")

    @app.command("export")
    def export(
        ctx: typer.Context,
        out: Path = typer.Option(..., "--out", help="Parquet file of every user's list."),
        category: str | None = typer.Option(
            None, "--category", help="Only items of these categories (comma-separated)."
        ),
        k: int = typer.Option(10, "--k", min=1, help="Items per user (and per item)."),
        similar: Path | None = typer.Option(
            None, "--similar", help="Also write similar items here (Parquet)."
        ),
        version: str | None = typer.Option(None, "--version", help="Model version (default: published)."),
    ) -> None:
        """Write every user's top-k (rows user_id, rank, item_id, score) for systems that want
        files: exact over the version's available items (of the categories), seen items left
        out; --similar adds each item's (item_id, rank, similar_item_id, score)."""
        from recforge.pipeline.exports import export_lists

        state: State = ctx.obj
        names = None if category is None else [c.strip() for c in category.split(",") if c.strip()]
        started = time.perf_counter()
        report = export_lists(state.home, out, k=k, categories=names, similar=similar, version=version)
        typer.echo(
            f"wrote {report['rows']:,} rows ({report['users']:,} users x {k}) to {out}"
            + (f" and {report['similar_rows']:,} rows to {similar}" if similar else "")
            + f" from version {report['version']} in {time.perf_counter() - started:.1f} s"
        )
