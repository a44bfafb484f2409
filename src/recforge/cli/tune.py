"""``recforge tune``: search a model's hyperparameters, the half-life and the event-type weights
on a holdout of the stored events (see :mod:`recforge.pipeline.store_tuning`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from recforge.cli.state import State


def register(app: typer.Typer) -> None:
    @app.command("tune")
    def tune(
        ctx: typer.Context,
        model: str | None = typer.Option(None, "--model", help="Model to tune (default: [model] name)."),
        trials: int = typer.Option(20, "--trials", help="Trials to run (a resumed study adds this many)."),
        timeout: str | None = typer.Option(
            None, "--timeout", help="Stop starting trials after this long: 90s, 5m, 1h."
        ),
        holdout: str | None = typer.Option(
            None,
            "--holdout",
            help="Temporal holdout: fraction (0.1 or 10%), span before the newest event (7d, 12h) or a "
            "cut time (ISO 8601). Default: [pipeline] holdout.",
        ),
        per_user: float | None = typer.Option(
            None, "--per-user", help="Per-user random holdout of this fraction of each user's events instead."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the per-user holdout."),
        k: int | None = typer.Option(None, "--k", help="Metrics @k (default: [pipeline] k)."),
        metric: str = typer.Option("ndcg", "--metric", help="Metric to maximise: ndcg, map, recall, ..."),
        study: str | None = typer.Option(
            None, "--study", help="Study name (default: the model's); an existing study continues."
        ),
        restart: bool = typer.Option(False, "--restart", help="Delete the study first and start over."),
        weights: bool = typer.Option(True, "--weights/--no-weights", help="Tune the event-type weights."),
        half_life: bool = typer.Option(True, "--half-life/--no-half-life", help="Tune the half-life."),
        random_state: int = typer.Option(0, "--random-state", help="Seed of the sampler and the models."),
        write_config: Path | None = typer.Option(
            None, "--write-config", help="Write the best configuration here (a config file for train)."
        ),
        json_out: Path | None = typer.Option(None, "--json", help="Write every trial as JSON here."),
    ) -> None:
        """Tune a model and the event weighting on a holdout of the stored events (Optuna TPE,
        poor trials pruned); print the best trials with NDCG and MAP."""
        from recforge.errors import RecforgeError
        from recforge.pipeline.holdout import parse_duration, parse_holdout
        from recforge.pipeline.store_tuning import tune_store, tuned_config

        state: State = ctx.obj
        if trials < 1:
            raise RecforgeError(f"--trials must be at least 1, got {trials}")
        if k is not None and k < 1:
            raise RecforgeError(f"--k must be at least 1, got {k}")
        tuning = tune_store(
            state.existing_home(),
            state.config,
            model=model,
            holdout=parse_holdout(holdout) if holdout else None,
            per_user=per_user,
            seed=seed,
            trials=trials,
            timeout=parse_duration(timeout) if timeout else None,
            k=k,
            metric=metric,
            study=study,
            restart=restart,
            tune_weights=weights,
            tune_half_life=half_life,
            random_state=random_state,
        )
        result = tuning.result
        split = tuning.split
        typer.echo(
            f"tuned {result.model} on {split['users']:,} users x {split['items']:,} items, validated on "
            f"{split['test_pairs']:,} held-out pairs ({_holdout(split)}): {result.count('complete')} "
            f"complete, {result.count('pruned')} pruned of {len(result.trials)} trials in study "
            f"{tuning.study!r} ({tuning.path}); this run {tuning.seconds:.1f} s"
        )
        _print_top(result, rows=5)
        if write_config is not None:
            write_config.parent.mkdir(parents=True, exist_ok=True)
            write_config.write_text(tuned_config(state.config, tuning))
            typer.echo(
                f"wrote {write_config}; use it with: recforge --config {write_config} build, then "
                f"recforge train --config {write_config}"
            )
        if json_out is not None:
            document = {**result.to_dict(), "split": split, "seconds": tuning.seconds}
            json_out.write_text(json.dumps(document, indent=2, default=str))
            typer.echo(f"wrote {json_out}")


def _holdout(split: dict[str, Any]) -> str:
    if split.get("method") == "random":
        return f"per-user {split['test_fraction']:g}, seed {split['random_state']}"
    return f"temporal, cut {split.get('cut')}"


def _print_top(result: Any, rows: int) -> None:
    k = result.k
    typer.echo(f"  {'trial':>5}  {f'NDCG@{k}':>8}  {f'MAP@{k}':>8}  parameters")
    for trial in result.top(rows):
        mark = "*" if trial.number == result.best_trial else " "
        params = " ".join(f"{key}={_short(value)}" for key, value in trial.params.items())
        ndcg, map_ = trial.scores.get("ndcg", 0.0), trial.scores.get("map", 0.0)
        typer.echo(f"{mark} {trial.number:>5}  {ndcg:>8.4f}  {map_:>8.4f}  {params}")
    first = next((t for t in result.trials if t.number == 0 and t.state == "complete"), None)
    if first is not None and result.best_trial != 0:
        typer.echo(
            f"  trial 0 (the configuration in use when the study began) scored {result.metric} "
            f"{first.value:.4f}; the best {result.best_score:.4f}"
        )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
