"""``recforge serve`` (the API on uvicorn) and ``recforge loadtest`` (Locust, headless)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer

from recforge.cli.state import State


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        ctx: typer.Context,
        host: str | None = typer.Option(None, "--host", help="Address (default: serving.host)."),
        port: int | None = typer.Option(None, "--port", help="Port (default: serving.port)."),
        workers: int | None = typer.Option(
            None, "--workers", help="API processes (default: serving.workers)."
        ),
        store: str | None = typer.Option(
            None, "--store", help="'mmap' or a redis://host:port/db URL (default: serving.store)."
        ),
        log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
        access_log: bool = typer.Option(False, "--access-log", help="Log every request (costs throughput)."),
    ) -> None:
        """Serve recommendations, similar items and event intake over HTTP (FastAPI on uvicorn),
        from the published model version; newly published versions are picked up live."""
        import uvicorn

        from recforge.errors import RecforgeError
        from recforge.serving.app import CONFIG_ENV, SECRET_VARIABLES, create_app

        state: State = ctx.obj
        home = state.existing_home()
        serving = state.config.serving
        serving.host = host or serving.host
        serving.port = port if port is not None else serving.port
        serving.workers = workers if workers is not None else serving.workers
        serving.store = store or serving.store
        if serving.workers < 1:
            raise RecforgeError(f"--workers must be >= 1, got {serving.workers}")
        _say_what_is_served(home, serving.store, serving.workers)
        if not serving.api_keys:
            typer.echo(
                "note: no API keys configured (RECFORGE_API_KEYS): POST /v1/events is disabled", err=True
            )
        options: dict[str, Any] = {
            "host": serving.host,
            "port": serving.port,
            "log_level": log_level,
            "access_log": access_log,
            "timeout_graceful_shutdown": 10,
        }
        if serving.workers == 1:
            uvicorn.run(create_app(state.config), **options)
            return
        if serving.store == "mmap":
            typer.echo(
                "note: with several workers and the mmap store, fresh events stay in the process that "
                "received them; use --store redis://... to share them",
                err=True,
            )
        # The workers get the effective configuration (keys included) from a file only this user
        # can read, never from the environment; the key variables are not passed on either.
        private = Path(tempfile.mkdtemp(prefix="recforge-serve-"))  # mode 0700
        config_file = private / "config.json"
        descriptor = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(state.config.to_dict(), handle)
        os.environ[CONFIG_ENV] = str(config_file)
        for secret in SECRET_VARIABLES:
            os.environ.pop(secret, None)
        metrics_dir = None
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics_dir = tempfile.mkdtemp(prefix="recforge-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        try:
            uvicorn.run(
                "recforge.serving.app:app_from_environment", factory=True, workers=serving.workers, **options
            )
        finally:
            shutil.rmtree(private, ignore_errors=True)
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)

    @app.command("loadtest")
    def loadtest(
        ctx: typer.Context,
        host: str = typer.Option(..., "--host", help="Server URL, e.g. http://127.0.0.1:8000."),
        users: int = typer.Option(20, "--users", help="Concurrent simulated clients."),
        rate: float = typer.Option(
            100.0, "--rate", help="Total requests per second (0: as fast as possible)."
        ),
        duration: int = typer.Option(30, "--duration", help="Seconds to run."),
        event_batch: int = typer.Option(100, "--event-batch", help="Events per POST /v1/events."),
        locustfile: Path | None = typer.Option(
            None, "--locustfile", help="Locust file (default: loadtest/locustfile.py of this checkout)."
        ),
        csv_prefix: Path | None = typer.Option(None, "--csv", help="Also keep Locust's CSV files here."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Run the Locust load test headless and print requests/s, p50/p95/p99 and failures per
        endpoint. Ids come from the published model under --home; events are posted when
        RECFORGE_API_KEYS (first key) or RECFORGE_LOADTEST_API_KEY is set, with event ids marked
        by [data] loadtest_prefix, so that builds leave them out. Exits 1 on failures."""
        from recforge.errors import RecforgeError

        state: State = ctx.obj
        if users < 1 or duration < 1 or rate < 0:
            raise RecforgeError("--users and --duration must be >= 1 and --rate >= 0")
        script = _find_locustfile(locustfile)
        with tempfile.TemporaryDirectory(prefix="recforge-loadtest-") as tmp:
            ids_file = Path(tmp) / "ids.json"
            ids_file.write_text(json.dumps(_sample_ids(state)))
            prefix = str(csv_prefix) if csv_prefix else str(Path(tmp) / "locust")
            command = [
                sys.executable, "-m", "locust", "-f", str(script), "--headless",
                "-u", str(users), "-r", str(users), "-t", f"{duration}s", "--host", host,
                "--csv", prefix, "--only-summary", "--stop-timeout", "5", "--loglevel", "WARNING",
                "--target-rps", str(rate), "--id-file", str(ids_file), "--event-batch", str(event_batch),
                "--event-id-prefix", state.config.data.loadtest_prefix or "loadtest-",
            ]  # fmt: skip
            env = dict(os.environ)
            keys = state.config.serving.api_keys
            if keys and not env.get("RECFORGE_LOADTEST_API_KEY"):
                env["RECFORGE_LOADTEST_API_KEY"] = keys[0]
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration + 120)
            stats = Path(f"{prefix}_stats.csv")
            if not stats.exists():
                raise RecforgeError(f"locust failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
            rows = _read_stats(stats)
        if as_json:
            typer.echo(json.dumps(rows))
        else:
            typer.echo(
                f"{'endpoint':<42} {'requests':>9} {'failures':>9} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
                f"{'p99 ms':>7}"
            )
            for row in rows:
                typer.echo(
                    f"{row['name']:<42} {row['requests']:>9,} {row['failures']:>9,} {row['rps']:>8.1f} "
                    f"{row['p50_ms']:>7.0f} {row['p95_ms']:>7.0f} {row['p99_ms']:>7.0f}"
                )
        total = next((r for r in rows if r["name"] == "Aggregated"), None)
        if total is None or total["failures"] or not total["requests"]:
            raise typer.Exit(1)


def _say_what_is_served(home: Path, store: str, workers: int) -> None:
    """The start-up summary on stderr: home, published version (or what to run), store, workers."""
    from recforge.artifacts import ModelRegistry
    from recforge.lists import safe_url

    typer.echo(f"recforge serve: home {home.resolve()}", err=True)
    version = ModelRegistry(home).current()
    if version is None:
        typer.echo(
            "warning: nothing is published here: every answer will be 503 until a version is "
            "(recforge pipeline run, or recforge train then recforge models publish latest)",
            err=True,
        )
    else:
        typer.echo(f"recforge serve: published version {version}", err=True)
    where = "mmap (the artifact's arrays)" if store == "mmap" else safe_url(store)
    typer.echo(f"recforge serve: list store {where}, {workers} worker{'s' if workers > 1 else ''}", err=True)


def _find_locustfile(given: Path | None) -> Path:
    from recforge.errors import RecforgeError

    candidates = [given] if given else [Path.cwd() / "loadtest" / "locustfile.py"]
    if not given:
        candidates.append(Path(__file__).resolve().parents[3] / "loadtest" / "locustfile.py")
    for path in candidates:
        if path is not None and path.is_file():
            return path
    raise RecforgeError("no locust file found; pass --locustfile (the repository has loadtest/locustfile.py)")


def _sample_ids(state: State, limit: int = 200_000) -> dict[str, list[str]]:
    """User and item ids of the published model (at most ``limit`` each), or none."""
    from recforge.artifacts import ModelRegistry
    from recforge.errors import RecforgeError

    try:
        model = ModelRegistry(state.home).open().model
    except (RecforgeError, OSError, ValueError):
        return {"users": [], "items": []}
    return {
        "users": model.users_.array.slice(0, limit).to_pylist(),
        "items": model.items_.array.slice(0, limit).to_pylist(),
    }


def _read_stats(path: Path) -> list[dict[str, Any]]:
    """Locust's ``*_stats.csv``: one row per endpoint and the ``Aggregated`` row."""
    rows = []
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            rows.append(
                {
                    "name": record["Name"],
                    "requests": int(record["Request Count"]),
                    "failures": int(record["Failure Count"]),
                    "rps": float(record["Requests/s"]),
                    "p50_ms": _number(record.get("50%")),
                    "p95_ms": _number(record.get("95%")),
                    "p99_ms": _number(record.get("99%")),
                }
            )
    return rows


def _number(text: str | None) -> float:
    try:
        return float(text or "nan")
    except ValueError:
        return float("nan")
