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

#: What a version argument accepts.
VERSION_HELP = "Version: latest, published, previous, a version name or its unique prefix"


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

        registry = ModelRegistry(_state(ctx).existing_home())
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
            if info.broken:
                typer.echo(f"{mark} {info.version:<33} {'broken':<10} {info.reason}")
                continue
            metrics = ", ".join(f"{k}={_short(v)}" for k, v in sorted(info.metrics.items())) or "-"
            typer.echo(
                f"{mark} {info.version:<33} {info.status:<10} {m.get('model', ''):<10} "
                f"{m.get('n_users', 0):>9,} {m.get('n_items', 0):>9,}  {metrics}"
            )

    @models.command("show")
    def show(
        ctx: typer.Context,
        version: str = typer.Argument("published", help=VERSION_HELP + " (default: published)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """A version's manifest: model, parameters, data window, metrics, list sizes, status, and
        the training loss after each iteration."""
        from recforge.artifacts import ModelRegistry

        registry = ModelRegistry(_state(ctx).existing_home())
        name = registry.resolve(version)
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
        typer.echo(f"{'training':>12}: {_training(record.get('extra') or {})}")

    @models.command("publish")
    def publish(
        ctx: typer.Context,
        version: str = typer.Argument(..., help=VERSION_HELP + "."),
        store: str | None = typer.Option(
            None, "--store", help="Load its lists into this Redis first (default: serving.store)."
        ),
    ) -> None:
        """Make a version the served one (running servers switch to it within a second). It is
        verified first (checksums, list ranges, a smoke query); one that fails is not published."""
        from recforge.artifacts import ModelRegistry

        state = _state(ctx)
        registry = ModelRegistry(state.existing_home())
        name = registry.resolve(version)
        registry.verify(name)
        _load_lists(state, registry, name, store)
        info = registry.publish(name, verify=False)  # verified just above
        typer.echo(f"published {info.version}")

    @models.command("rollback")
    def rollback(
        ctx: typer.Context,
        to: str = typer.Argument("previous", help=VERSION_HELP + " to go back to (default: previous)."),
        store: str | None = typer.Option(
            None, "--store", help="Load its lists into this Redis first (default: serving.store)."
        ),
    ) -> None:
        """Publish again the version that was published before the current one (in publish
        history), or the one named; verified first."""
        from recforge.artifacts import ModelRegistry

        state = _state(ctx)
        registry = ModelRegistry(state.existing_home())
        target = registry.resolve(to)
        registry.verify(target)
        _load_lists(state, registry, target, store)
        # verified just above
        info = registry.rollback(verify=False) if to == "previous" else registry.publish(target, verify=False)
        typer.echo(f"rolled back to {info.version}")

    @models.command("load")
    def load(
        ctx: typer.Context,
        version: str = typer.Argument("published", help=VERSION_HELP + " (default: published)."),
        store: str | None = typer.Option(None, "--store", help="Redis URL (default: serving.store)."),
    ) -> None:
        """Copy a version's precomputed lists into a Redis list store."""
        from recforge.artifacts import ModelRegistry

        state = _state(ctx)
        registry = ModelRegistry(state.existing_home())
        name = registry.resolve(version)
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


def _training(extra: dict[str, Any]) -> str:
    """``15 iterations, loss 2.82e+06 -> 2.81e+06, 3.1 s`` from the recorded history, or ``-``."""
    iterations = (extra.get("training") or {}).get("iterations") or []
    if not iterations:
        return "-"
    first, last = iterations[0], iterations[-1]
    return (
        f"{len(iterations)} iterations, loss {first['loss']:.6g} -> {last['loss']:.6g}, "
        f"{last['seconds']:.1f} s"
    )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
