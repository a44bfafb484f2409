"""``recforge ingest FILE...`` (short for ``recforge ingest files FILE...``) and
``recforge ingest kafka``: bringing events into the store."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from recforge.cli.state import State

FORMAT_HELP = "csv, tsv, jsonl, parquet, ml-100k (u.data), ml-dat (ratings.dat), ml-csv, ml-pairs"


class _FilesByDefault(TyperGroup):
    """A group whose arguments go to its ``files`` command unless they start with a command name:
    ``recforge ingest a.csv`` is ``recforge ingest files a.csv`` (a file named ``kafka`` is
    ``./kafka``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # a click Context (vendored by typer)
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["files", *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The group's help, then the options of ``recforge ingest FILE...`` (the common case),
        so that ``recforge ingest --help`` shows ``--map``, ``--format``, ``--strict``..."""
        super().format_help(ctx, formatter)
        files = self.commands["files"]
        with formatter.section("Options of recforge ingest FILE..."):
            options = [p for p in files.get_params(ctx) if p.param_type_name == "option" and p.name != "help"]
            rows = [p.get_help_record(ctx) for p in options]
            formatter.write_dl([row for row in rows if row is not None])


def register(app: typer.Typer) -> None:
    ingest = typer.Typer(
        cls=_FilesByDefault,
        no_args_is_help=True,
        help="Bring events into the event store: from files (`recforge ingest FILE...`) or Kafka.",
    )
    app.add_typer(ingest, name="ingest")

    @ingest.command("files")
    def files(
        ctx: typer.Context,
        paths: list[Path] = typer.Argument(..., help="Event files (gzip is read transparently)."),
        format: str | None = typer.Option(None, "--format", help=f"Input format: {FORMAT_HELP}."),
        map_: str | None = typer.Option(
            None, "--map", help="Column mapping FIELD=COLUMN,..., e.g. user_id=userId,item_id=movieId."
        ),
        strict: bool = typer.Option(False, "--strict", help="Any bad row fails the whole file."),
        event_type: str | None = typer.Option(
            None,
            "--event-type",
            help="The event type of every row, for files without that column (e.g. view).",
        ),
        value: float | None = typer.Option(
            None, "--value", help="The value of every row, for files without that column (default 1.0)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON report per file."),
    ) -> None:
        """Ingest event files (the default: `recforge ingest FILE...`).

        Validates the files and adds the good rows to the event store; bad rows go to
        <home>/quarantine/ with their line number and reason. A file that cannot be read is
        reported and skipped: the others are still ingested, and the command exits 2 at the end."""
        from recforge.data.ingest import ingest_file
        from recforge.data.readers import parse_mapping
        from recforge.data.store import EventStore
        from recforge.errors import RecforgeError

        state: State = ctx.obj
        mapping = parse_mapping(map_)
        constants: dict[str, Any] = {}
        if event_type is not None:
            constants["event_type"] = event_type
        if value is not None:
            constants["value"] = value
        store = EventStore(state.writable_home())
        failed: list[str] = []
        for path in paths:
            started = time.perf_counter()
            try:
                report = ingest_file(
                    path,
                    store,
                    state.config,
                    format=format,
                    mapping=mapping,
                    constants=constants,
                    strict=strict,
                )
            except RecforgeError as error:  # this file only: the next ones are still ingested
                failed.append(str(path))
                message = " ".join(str(error).split())
                if as_json:
                    typer.echo(json.dumps({"source": str(path), "error": message}))
                typer.echo(f"recforge: error: {message}", err=True)
                continue
            took = time.perf_counter() - started
            if as_json:
                typer.echo(json.dumps({**report.to_dict(), "seconds": round(took, 3)}))
                continue
            typer.echo(
                f"{path}: {report.accepted:,} accepted, {report.rejected:,} rejected, "
                f"{report.duplicates:,} duplicate ({report.format}, {took:.1f} s)"
            )
            if report.quarantine:
                typer.echo(f"  rejected rows: {report.quarantine}")
        if failed:
            if len(paths) > 1:
                typer.echo(
                    f"recforge: {len(failed)} of {len(paths)} files not ingested: {', '.join(failed)}",
                    err=True,
                )
            raise typer.Exit(2)

    @ingest.command("kafka")
    def kafka(
        ctx: typer.Context,
        bootstrap: str = typer.Option(..., "--bootstrap", help="Broker address(es): HOST:PORT[,HOST:PORT]."),
        topic: str | None = typer.Option(
            None, "--topic", help="Topic of JSON events, one event per message."
        ),
        group: str = typer.Option(
            ..., "--group", help="Consumer group (a new group starts at the earliest offset)."
        ),
        items_topic: str | None = typer.Option(
            None,
            "--items-topic",
            help="Topic of JSON item records, upserted into the catalog (exactly once).",
        ),
        items_group: str | None = typer.Option(
            None, "--items-group", help="Consumer group of --items-topic (default: <group>-items)."
        ),
        fresh_store: str | None = typer.Option(
            None,
            "--fresh-store",
            help="Also pass stored events to serving's fresh events in this Redis store (default: "
            "serving.store when it is a redis:// URL).",
        ),
        max_idle: float | None = typer.Option(
            None,
            "--max-idle",
            help="Stop after this many seconds without a message, counted once partitions are "
            "assigned. Default: run until SIGTERM or Ctrl-C.",
        ),
        batch_events: int | None = typer.Option(
            None, "--batch-events", help="Messages per stored batch at most (default: kafka.batch_events)."
        ),
        max_batch_wait_s: float | None = typer.Option(
            None,
            "--max-batch-wait-s",
            help="Store a batch after this many seconds (default: kafka.max_batch_wait_s).",
        ),
        session_timeout_ms: int | None = typer.Option(
            None, "--session-timeout-ms", help="Group session timeout (default: kafka.session_timeout_ms)."
        ),
        metrics_port: int | None = typer.Option(
            None,
            "--metrics-port",
            help="Serve Prometheus metrics of the events topic on this port (default: kafka.metrics_port)",
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the final report(s) as JSON, one per topic."
        ),
    ) -> None:
        """Consume JSON events from a Kafka topic into the event store, and item records from an
        items topic into the catalog.

        Messages are validated as files are (bad ones quarantined with partition and offset),
        stored in batches, and their offsets committed once a batch is durable; item batches are
        applied exactly once (their offsets are kept in the catalog store). With a Redis
        serving store, stored events also become fresh events every API process folds in.
        SIGTERM stores and commits the batches in hand, then exits 0."""
        from recforge.artifacts import ModelRegistry
        from recforge.catalog import CatalogStore
        from recforge.catalog.kafka import ItemSink
        from recforge.data.kafka import EventSink, KafkaIngestor, run_ingestors
        from recforge.data.store import EventStore
        from recforge.errors import RecforgeError
        from recforge.serving.backend import is_redis_url
        from recforge.serving.fresh import FreshFeed, RedisFreshEvents

        state: State = ctx.obj
        if topic is None and items_topic is None:
            raise RecforgeError("give --topic (events), --items-topic (catalog items), or both")
        changes: dict[str, Any] = {
            "batch_events": batch_events,
            "session_timeout_ms": session_timeout_ms,
            "max_batch_wait_s": max_batch_wait_s,
        }
        changes = {key: value for key, value in changes.items() if value is not None}
        config = dataclasses.replace(state.config, kafka=dataclasses.replace(state.config.kafka, **changes))
        serving = config.serving
        redis_url = fresh_store or (serving.store if is_redis_url(serving.store) else None)
        ingestors = []
        if topic is not None:
            feed = None
            if redis_url is not None:
                from recforge.lists import redis_client

                fresh = RedisFreshEvents(
                    redis_client(redis_url),
                    redis_url,
                    serving.redis_prefix,
                    serving.fresh_events_per_user,
                    serving.fresh_ttl_seconds,
                )
                feed = FreshFeed(fresh, config.weighting.value(), ModelRegistry(state.writable_home()))
            sink = EventSink(EventStore(state.writable_home()), on_stored=feed)
            ingestors.append(
                KafkaIngestor(
                    sink,
                    config,
                    bootstrap=bootstrap,
                    topic=topic,
                    group=group,
                    max_idle=max_idle,
                    metrics_port=metrics_port,
                )
            )
        if items_topic is not None:
            items = ItemSink(CatalogStore(state.writable_home()), items_topic)
            ingestors.append(
                KafkaIngestor(
                    items,
                    config,
                    bootstrap=bootstrap,
                    topic=items_topic,
                    group=items_group or f"{group}-items",
                    max_idle=max_idle,
                    metrics_port=0,
                )
            )
        for ingestor, report in zip(ingestors, run_ingestors(ingestors), strict=True):
            if as_json:
                typer.echo(json.dumps(report.to_dict()))
                continue
            joined = "never joined" if report.joined_s is None else f"joined in {report.joined_s:.1f} s"
            what = "items" if ingestor.topic == items_topic and ingestor.topic != topic else "events"
            typer.echo(
                f"kafka:{ingestor.topic} (group {ingestor.group}): {report.messages:,} messages: "
                f"{report.accepted:,} {what} accepted, {report.duplicates:,} duplicate, "
                f"{report.rejected:,} rejected; {report.batches:,} batches in {report.active_s:.1f} s "
                f"({report.rate:,.0f} messages/s; {joined}); stopped: {report.stopped}; "
                f"lag {report.total_lag:,}"
            )
            if report.commit_failures:
                typer.echo(
                    f"  offset commits failed {report.commit_failures} times (stored; read again later)"
                )
            if report.quarantine:
                typer.echo(f"  rejected messages: {report.quarantine}")
