"""``recforge demo``: the whole loop on a fresh home in about a minute.

Synthetic marketplace events and their catalog (or a MovieLens file, and its item file) ->
ingest -> build with a holdout -> train -> evaluate beside popularity -> gate -> precompute ->
publish, then a few users' recommendations by their external ids, one user's list within a
category with titles and prices (sold-out items left out), a table of P@10, NDCG@10 and MAP@10
beside popularity, and the lift. It is :func:`recforge.pipeline.run_pipeline` on a demo home,
nothing more.

The protocol fits the data. Marketplace events (views, carts, purchases over time) get the
configured time decay and a temporal holdout (the newest events), and the demo trains the best
model the package has (``--model``, default ALS), fitted with the catalog so that new arrivals
get factors. Rating data (every event a ``rating``, as MovieLens files are read) have no
marketplace half-life (a rating does not fade) and no meaningful order in time (a user rates
many films in one sitting), so they get no decay and a per-user holdout (20% of each user's
ratings, ``[pipeline] holdout_per_user``), and the pipeline's tune stage first searches every
model family on the train part for ``tune`` (``[pipeline] tune_budget``; per-user folds, never
the holdout) and trains the winner.
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
import orjson

from recforge.artifacts import ModelRegistry
from recforge.catalog import Catalog, CatalogStore
from recforge.catalog.ingest import ingest_items
from recforge.catalog.synthetic import generate_catalog
from recforge.config import Config
from recforge.data.generate import generate_events, write_events
from recforge.data.ingest import ingest_file
from recforge.data.interactions import Interactions
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.models.registry import MODELS
from recforge.pipeline.holdout import parse_duration
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
    items_file: Path | None = None
    model: str | None = None
    samples: int = 3
    #: the tuning budget for rating data (a duration; "0": no tuning)
    tune: str = "1m"


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
        if _only_ratings(EventStore(home)):
            _rating_protocol(config, settings, console)
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
        new_items = max(1, settings.items // 100)
        items = generate_catalog(settings.items, settings.seed, new_items=new_items, days=settings.days)
        CatalogStore(home).upsert(Catalog.from_records(items.to_pylist()).patches())
        console.print(
            f"generated their catalog: {items.num_rows:,} items ({new_items:,} new arrivals without events, "
            f"10% sold out) into the catalog store"
        )
    if settings.items_file is not None:
        items_report = ingest_items(settings.items_file, CatalogStore(home), config)
        console.print(
            f"ingested {items_report.upserted:,} items from {settings.items_file} "
            f"({items_report.rejected:,} rejected)"
        )
    tuning = config.pipeline.tune_every > 0
    what = "the model tuned on the train part" if tuning else f"model [bold]{config.model.name}[/bold]"
    console.print(f"running the pipeline with {what} ...")
    with _fit_lines_on_stderr():
        result = run_pipeline(home, config)
    run = Run.load(result.path)
    trained = run.result("train")
    name = trained["model"]
    if tuning:
        _print_tuning(run, console)
        name = f"{name} (tuned)"
    if result.version is not None:
        _print_samples(home, run, result.version, settings.samples, console)
        _print_category_list(home, run, result.version, console)
    console.print(
        f"done in {time.perf_counter() - started:.1f} s. Explore: recforge --home {home} pipeline status | "
        f"evaluate --plot metrics.png | models list",
        highlight=False,
    )
    lift = _print_metrics(run, name, console)
    console.print(_verdict(result), highlight=False)
    if lift is not None:
        k = run.result("evaluate")["k"]
        console.print(
            f"{name} against popularity on the held-out events: NDCG@{k} {lift:+.0%}", highlight=False
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


def _only_ratings(store: EventStore) -> bool:
    """Whether every stored event is a ``rating``."""
    import pyarrow.compute as pc

    types = pc.unique(store.scan(["event_type"]).column("event_type")).to_pylist()
    return bool(types) and set(types) == {"rating"}


def _rating_protocol(config: Config, settings: DemoSettings, console: Console) -> None:
    """Rating data: no decay, a per-user holdout, and (unless ``tune`` is "0") tuning first."""
    config.weighting.half_life_days = 0.0
    config.pipeline.holdout_per_user = 0.2
    tune = settings.model is None and settings.tune.strip() not in ("0", "0s", "")
    if tune:
        parse_duration(settings.tune)  # a bad budget is an error now, not after the ingest
        config.pipeline.tune_every = 1
        config.pipeline.tune_model = "auto"
        config.pipeline.tune_budget = settings.tune
    console.print(
        "rating data: no time decay, a per-user holdout of 20% of each user's ratings"
        + (f"; tuning every model family on the train part for {settings.tune}" if tune else ""),
        highlight=False,
    )


def _print_tuning(run: Run, console: Console) -> None:
    tuned = run.result("tune")
    if "skipped" in tuned:
        return
    params = ", ".join(f"{k}={_short(v)}" for k, v in tuned["params"].items() if k not in ("num_threads",))
    families = ", ".join(f"{name} {score:.4f}" for name, score in tuned["families"].items())
    console.print(
        f"tuned in {tuned['seconds']:.0f} s ({tuned['trials']} trials, {tuned['folds']} per-user folds of "
        f"the train part): best NDCG@10 per family {families}; chosen {tuned['model']} ({params})",
        highlight=False,
    )


def _print_metrics(run: Run, model: str, console: Console) -> float | None:
    """The table of metrics beside popularity; returns the NDCG lift."""
    from rich.table import Table

    evaluated = run.result("evaluate")
    metrics, k = evaluated["metrics"], evaluated["k"]
    table = Table(title=f"Holdout: {evaluated['users']:,} users", title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("popularity", justify="right")
    table.add_column(model, justify="right")
    table.add_column("lift", justify="right")
    lifts = {}
    for key, label in SHOWN:
        base, value = metrics["popular"].get(key), metrics["candidate"].get(key)
        lift = value / base - 1 if _finite(base) and base and _finite(value) else None
        lifts[key] = lift
        table.add_row(f"{label}@{k}", _fmt(base), _fmt(value), "" if lift is None else f"{lift:+.0%}")
    console.print(table)
    return lifts.get("ndcg")


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


def _print_category_list(home: Path, run: Run, version: str, console: Console, k: int = 5) -> None:
    """A user's list within the category they use most (among those with ``k`` items left for
    them), as a page would show it: titles and prices, sold-out items left out."""
    store = CatalogStore(home)
    if not store.exists:
        return
    model = ModelRegistry(home).open(version).model
    eligibility = Catalog.load(home).eligibility(model.items_)
    train = Interactions.load(Path(run.result("build")["path"]) / "train")
    activity = np.diff(train.matrix.indptr)
    row = int(np.argsort(activity, kind="stable")[int(len(activity) * 0.9)])  # an active user
    user = train.users.id(row)
    seen = set(train.items.ids(train.matrix[row].indices).tolist())
    tally: dict[str, int] = {}
    for name, members in eligibility.members.items():
        tally[name] = len(seen.intersection(model.items_.ids(members).tolist()))
    ranked = sorted(tally, key=lambda name: (-tally[name], name))
    left = [
        name for name in ranked if len(set(model.items_.ids(eligibility.items([name])).tolist()) - seen) >= k
    ]
    if not left:
        return
    category = left[0]
    ids, _ = model.recommend([user], k, items=eligibility.items([category]))
    console.print(f"{user}'s top {k} in {category!r} (available items only):", highlight=False)
    for item in (i for i in ids[0] if i is not None):
        record = store.get(str(item))
        attributes = orjson.loads(record.attributes) if record else {}
        price = attributes.get("price")
        shown = f"  {item:<8} {attributes.get('title', '')}"
        console.print(shown + (f"  ${price:,.2f}" if isinstance(price, int | float) else ""), highlight=False)


def _served(artifact: Any, user: str, k: int) -> list[str]:
    row = artifact.model.users_.get(user)
    ids = artifact.user_ids[row, :k] if row >= 0 else artifact.popular_ids[:k]
    return [str(s) for s in artifact.model.items_.ids(np.asarray(ids)) if s is not None]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _fmt(value: float | None) -> str:
    return f"{value:.4f}" if _finite(value) else "n/a"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
