"""``recforge demo``: the whole loop on a fresh home in about a minute.

Synthetic marketplace events (or a MovieLens file) -> ingest -> build with a temporal holdout
-> train the best model the package has (ALS, else ItemKNN, BPR, Popular) -> evaluate beside
popularity -> gate -> precompute -> publish, then a table of P@10, NDCG@10 and MAP@10 and a
few users' recommendations by their external ids. It is :func:`recforge.pipeline.run_pipeline`
on a demo home, nothing more.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recforge.artifacts import ModelRegistry
from recforge.config import Config
from recforge.data.generate import generate_events, write_events
from recforge.data.ingest import ingest_file
from recforge.data.interactions import Interactions
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.models.registry import MODELS
from recforge.pipeline.runner import RunResult, run_pipeline
from recforge.pipeline.stages import fit_log
from recforge.pipeline.state import Run

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["DEFAULT_HOME", "DemoSettings", "run_demo"]

DEFAULT_HOME = Path("recforge_demo")
MARKER = ".recforge-demo"
SHOWN = (("precision", "P"), ("ndcg", "NDCG"), ("map", "MAP"))


@dataclass(frozen=True)
class DemoSettings:
    """What the demo generates (ignored with ``data``) and fits."""

    events: int = 200_000
    users: int = 10_000
    items: int = 2_000
    days: float = 90.0
    seed: int = 0
    data: Path | None = None
    format: str | None = None
    model: str | None = None
    samples: int = 3


def prepare_home(home: Path) -> None:
    """Wipe and recreate ``home``: only an empty directory or an earlier demo's is wiped."""
    if home.exists():
        if not home.is_dir():
            raise RecforgeError(f"{home} exists and is not a directory")
        if any(home.iterdir()) and not (home / MARKER).exists():
            raise RecforgeError(f"refusing to wipe {home}: it is not empty and not a recforge demo home")
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("made by recforge demo; wiped by the next one\n")


def run_demo(home: Path, config: Config, settings: DemoSettings, console: Console) -> RunResult:
    """Run the demo into ``home`` (wiped first), printing to ``console``."""
    started = time.perf_counter()
    prepare_home(home)
    config = copy.deepcopy(config)
    config.home = str(home)
    config.pipeline.inbox = ""
    config.pipeline.lock_path = ""
    config.model.name = settings.model or next(iter(MODELS))
    if settings.data is not None:
        report = ingest_file(settings.data, EventStore(home), config, format=settings.format)
        console.print(
            f"ingested {report.accepted:,} events from {settings.data} ({report.rejected:,} rejected)"
        )
    else:
        table = generate_events(
            users=settings.users,
            items=settings.items,
            events=settings.events,
            days=settings.days,
            seed=settings.seed,
        )
        path = write_events(table, home / "inbox" / "events.parquet")
        console.print(
            f"generated {table.num_rows:,} marketplace events ({settings.users:,} users, "
            f"{settings.items:,} items, {settings.days:g} days) into {path}"
        )
    console.print(f"running the pipeline with model [bold]{config.model.name}[/bold] ...")
    with _fit_lines_on_stderr():
        result = run_pipeline(home, config)
    run = Run.load(result.path)
    _print_metrics(run, config.model.name, console)
    console.print(_verdict(result), highlight=False)
    if result.version is not None:
        _print_samples(home, run, result.version, settings.samples, console)
    console.print(
        f"done in {time.perf_counter() - started:.1f} s. Explore: recforge --home {home} pipeline status | "
        f"evaluate --plot metrics.png | models list",
        highlight=False,
    )
    return result


@contextlib.contextmanager
def _fit_lines_on_stderr() -> Iterator[None]:
    """The train stage's line per iteration (shown when stderr is not a terminal; on one, a
    bar) on stderr, without the other stages' log."""
    handler = logging.StreamHandler(sys.stderr)
    fit_log.addHandler(handler)
    level = fit_log.level
    fit_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        fit_log.removeHandler(handler)
        fit_log.setLevel(level)


def _print_metrics(run: Run, model: str, console: Console) -> None:
    from rich.table import Table

    evaluated = run.result("evaluate")
    metrics, k = evaluated["metrics"], evaluated["k"]
    table = Table(title=f"Holdout: {evaluated['users']:,} users", title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("popularity", justify="right")
    table.add_column(model, justify="right")
    table.add_column("lift", justify="right")
    for key, label in SHOWN:
        base, value = metrics["popular"].get(key), metrics["candidate"].get(key)
        lift = value / base - 1 if _finite(base) and base and _finite(value) else None
        table.add_row(f"{label}@{k}", _fmt(base), _fmt(value), "" if lift is None else f"{lift:+.0%}")
    console.print(table)


def _verdict(result: RunResult) -> str:
    if result.outcome == "published":
        return f"gate: accepted, published version {result.version}"
    if result.outcome == "rejected":
        return f"gate: rejected ({result.reason}); version {result.version} kept, not served"
    return f"pipeline: {result.outcome or result.status}"


def _print_samples(home: Path, run: Run, version: str, count: int, console: Console) -> None:
    """A few users' strongest past items and their served lists, and one item's neighbours."""
    artifact = ModelRegistry(home).open(version)
    train = Interactions.load(Path(run.result("build")["path"]) / "train")
    model = artifact.model
    per_user = np.diff(train.matrix.indptr)
    active = np.flatnonzero(per_user >= 5)
    if len(active) == 0:
        return
    picks = active[np.linspace(0, len(active) - 1, min(count, len(active))).astype(int)]
    console.print(f"sample recommendations (version {version}):", highlight=False)
    for row in picks:
        user = train.users.id(int(row))
        start, stop = train.matrix.indptr[row], train.matrix.indptr[row + 1]
        strongest = train.matrix.indices[start:stop][
            np.argsort(-train.matrix.data[start:stop], kind="stable")[:5]
        ]
        served = _served(artifact, user, 5)
        console.print(
            f"  {user} ({stop - start} items) liked {', '.join(train.items.ids(strongest))} "
            f"-> {', '.join(served) or '(none)'}",
            highlight=False,
        )
    top = int(artifact.popular_ids[0]) if len(artifact.popular_ids) else -1
    if top >= 0:
        similar = [s for s in model.items_.ids(artifact.item_ids[top, :5]) if s is not None]
        console.print(
            f"  viewed together with {model.items_.id(top)} (the most popular item): {', '.join(similar)}",
            highlight=False,
        )


def _served(artifact: Any, user: str, k: int) -> list[str]:
    row = artifact.model.users_.get(user)
    ids = artifact.user_ids[row, :k] if row >= 0 else artifact.popular_ids[:k]
    return [str(s) for s in artifact.model.items_.ids(np.asarray(ids)) if s is not None]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _fmt(value: float | None) -> str:
    return f"{value:.4f}" if _finite(value) else "n/a"
