"""``recforge models list | show | publish | rollback | load``: the model registry.

Versions are made by ``recforge train`` (or the pipeline, with its quality gate); ``load``
copies a version's precomputed lists into the Redis list store.
"""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from recforge.cli.state import State


def register(app: typer.Typer) -> None:
    models = typer.Typer(
        help="The model registry: list, show, publish, roll back, load into Redis.", no_args_is_help=True
    )
    app.add_typer(models, name="models")

    @models.command("list")
    def list_versions(
        ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
    ) -> None:
        """Every stored version, oldest first; the published one is marked with *."""
        from recforge.artifacts import ModelRegistry

        registry = ModelRegistry(_state(ctx).home)
        versions = registry.list()
        current = registry.current()
        if as_json:
            typer.echo(
                json.dumps([_summary(v.to_dict(), v.version == current) for v in versions], default=str)
            )
            return
        if not versions:
            typer.echo(f"no model versions under {registry.root}")
            return
        typer.echo(f"  {'version':<33} {'status':<10} {'model':<10} {'users':>9} {'items':>9}  metrics")
        for info in versions:
            m = info.manifest
            mark = "*" if info.version == current else " "
            metrics = ", ".join(f"{k}={_short(v)}" for k, v in sorted(info.metrics.items()))
            typer.echo(
                f"{mark} {info.version:<33} {info.status:<10} {m.get('model', ''):<10} "
                f"{m.get('n_users', 0):>9,} {m.get('n_items', 0):>9,}  {metrics}"
            )

    @models.command("show")
    def show(
        ctx: typer.Context,
        version: str | None = typer.Argument(None, help="Version (default: the published one)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """A version's manifest: model, parameters, data window, metrics, list sizes, status."""
        from recforge.artifacts import ModelRegistry
        from recforge.errors import RecforgeError

        registry = ModelRegistry(_state(ctx).home)
        name = version or registry.current()
        if name is None:
            raise RecforgeError(f"nothing is published under {registry.root}; name a version")
        info = registry.get(name)
        record = {**info.to_dict(), "published": name == registry.current()}
        if as_json:
            typer.echo(json.dumps(record, default=str, sort_keys=True))
            return
        for key in ("version", "status", "reason", "published", "created", "model", "n_users", "n_items"):
            typer.echo(f"{key:>12}: {record.get(key)}")
        for key in ("params", "data_window", "metrics"):
            typer.echo(f"{key:>12}: {json.dumps(record.get(key, {}), default=str, sort_keys=True)}")
        typer.echo(f"{'lists':>12}: k_users={record.get('k_users')} k_items={record.get('k_items')}")

    @models.command("publish")
    def publish(
        ctx: typer.Context,
        version: str = typer.Argument(..., help="The version to serve."),
        store: str | None = typer.Option(
            None, "--store", help="Load its lists into this Redis first (default: serving.store)."
        ),
    ) -> None:
        """Make a version the served one (running servers switch to it within a second)."""
        from recforge.artifacts import ModelRegistry

        state = _state(ctx)
        registry = ModelRegistry(state.home)
        _load_lists(state, registry, version, store)
        info = registry.publish(version)
        typer.echo(f"published {info.version}")

    @models.command("rollback")
    def rollback(
        ctx: typer.Context,
        store: str | None = typer.Option(
            None, "--store", help="Load its lists into this Redis first (default: serving.store)."
        ),
    ) -> None:
        """Publish again the version that was published before the current one."""
        from recforge.artifacts import ModelRegistry

        state = _state(ctx)
        registry = ModelRegistry(state.home)
        info = registry.rollback()
        _load_lists(state, registry, info.version, store)
        typer.echo(f"rolled back to {info.version}")

    @models.command("load")
    def load(
        ctx: typer.Context,
        version: str | None = typer.Argument(None, help="Version (default: the published one)."),
        store: str | None = typer.Option(None, "--store", help="Redis URL (default: serving.store)."),
    ) -> None:
        """Copy a version's precomputed lists into a Redis list store."""
        from recforge.artifacts import ModelRegistry
        from recforge.errors import RecforgeError

        state = _state(ctx)
        registry = ModelRegistry(state.home)
        name = version or registry.current()
        if name is None:
            raise RecforgeError(f"nothing is published under {registry.root}; name a version")
        if not _load_lists(state, registry, name, store, required=True):
            typer.echo(f"{name} is already loaded")


def _load_lists(state: State, registry: Any, version: str, store: str | None, required: bool = False) -> bool:
    """Load a version's lists into the Redis store (``--store`` or ``serving.store``), if any."""
    from recforge.errors import RecforgeError
    from recforge.lists import RedisLists, is_redis_url, safe_url

    url = store or state.config.serving.store
    if not is_redis_url(url):
        if required or store is not None:
            raise RecforgeError(f"--store must be a redis:// URL, got {url!r}")
        return False
    serving = state.config.serving
    lists = RedisLists(url, serving.redis_prefix, serving.redis_keep_versions)
    started = time.perf_counter()
    artifact = registry.open(version)
    loaded = lists.load(version, artifact.model.users_, artifact.model.items_, artifact.lists)
    if loaded:
        typer.echo(
            f"loaded the lists of {version} into {safe_url(url)} in {time.perf_counter() - started:.1f} s"
        )
    return loaded


def _state(ctx: typer.Context) -> State:
    state: State = ctx.obj
    return state


def _summary(record: dict[str, Any], published: bool) -> dict[str, Any]:
    return {key: value for key, value in {**record, "published": published}.items() if key != "checksums"}


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
