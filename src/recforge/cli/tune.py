"""``recforge tune``: search a model's hyperparameters (or every model family's: ``--model
auto``), the half-life and the event-type weights on a holdout of the stored events, for a time
budget (see :mod:`recforge.pipeline.store_tuning`)."""

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
        model: str | None = typer.Option(
            None, "--model", help="Model to tune (default: [model] name); auto: every family, the best wins."
        ),
        trials: int | None = typer.Option(
            None,
            "--trials",
            help="Trials to run (per family with auto; default: as many as the time allows).",
        ),
        timeout: str | None = typer.Option(
            None,
            "--timeout",
            help="Stop starting trials after this long: 90s, 5m, 1h (default: [pipeline] tune_budget, "
            "unless --trials is given).",
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
        metric: str = typer.Option(
            "ndcg",
            "--metric",
            help="Metric to maximise (ndcg, map, recall, ...), or several: ndcg,map maximises "
            "the first and reports all.",
        ),
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
        fix: list[str] = typer.Option(
            [],
            "--fix",
            help="Hold a hyperparameter at a value instead of searching it: --fix factors=64 (repeatable; "
            "NAME.KEY=VALUE for one family of --model auto).",
        ),
        json_out: Path | None = typer.Option(None, "--json", help="Write every trial as JSON here."),
        plot_out: Path | None = typer.Option(
            None, "--plot", help="Draw the trials' metrics against each other and each parameter (PNG) here."
        ),
    ) -> None:
        """Tune a model (or every family: --model auto) and the event weighting on a holdout of
        the stored events for a time budget (Optuna TPE, poor trials pruned); print the best
        trials with their metrics."""
        from recforge.cli.overrides import assigned_params
        from recforge.errors import RecforgeError
        from recforge.evaluation.tuning import AUTO
        from recforge.models.registry import automl_models
        from recforge.pipeline.holdout import parse_duration, parse_holdout
        from recforge.pipeline.store_tuning import tune_store, tuned_config

        state: State = ctx.obj
        if trials is not None and trials < 1:
            raise RecforgeError(f"--trials must be at least 1, got {trials}")
        if k is not None and k < 1:
            raise RecforgeError(f"--k must be at least 1, got {k}")
        name = model or state.config.model.name
        families = automl_models() if name == AUTO else [name]
        hold = assigned_params(state.config, families, fix) if fix else None
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
            hold=hold,
        )
        result = tuning.result
        split = tuning.split
        what = f"auto (best: {result.model})" if result.families else result.model
        typer.echo(
            f"tuned {what} on {split['users']:,} users x {split['items']:,} items, validated on "
            f"{split['test_pairs']:,} held-out pairs ({_holdout(split)}): {result.count('complete')} "
            f"complete, {result.count('pruned')} pruned of {len(result.trials)} trials in study "
            f"{tuning.study!r} ({tuning.path}); this run {tuning.seconds:.1f} s"
        )
        for family, found in result.families.items():
            typer.echo(
                f"  best {family}: {found.metric}@{found.k} {found.best_score:.4f} "
                f"({len(found.trials)} trials, {found.seconds:.0f} s)"
            )
        for family, reason in result.info.get("skipped", {}).items():
            typer.echo(f"  skipped {family}: {reason}")
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
        if plot_out is not None:
            from recforge.evaluation.study_plot import plot_study

            typer.echo(f"wrote {plot_study(result, plot_out)}")


def _holdout(split: dict[str, Any]) -> str:
    if split.get("method") == "random":
        return f"per-user {split['test_fraction']:g}, seed {split['random_state']}"
    return f"temporal, cut {split.get('cut')}"


def _print_top(result: Any, rows: int) -> None:
    from recforge.evaluation.report import LABELS

    k = result.k
    metrics = list(dict.fromkeys((*result.metrics, "ndcg", "map")))
    columns = "  ".join(f"{f'{LABELS.get(m, m)}@{k}':>8}" for m in metrics)
    typer.echo(f"  {'model':<8} {'trial':>5}  {columns}  parameters")
    for trial in result.top(rows):
        mark = "*" if (trial.model, trial.number) == (result.model, result.best_trial) else " "
        params = " ".join(f"{key}={_short(value)}" for key, value in trial.params.items())
        values = "  ".join(f"{trial.scores.get(m, float('nan')):>8.4f}" for m in metrics)
        typer.echo(f"{mark} {trial.model:<8} {trial.number:>5}  {values}  {params}")
    first = next(
        (t for t in result.trials if (t.model, t.number) == (result.model, 0) and t.state == "complete"), None
    )
    if first is not None and result.best_trial != 0:
        typer.echo(
            f"  trial 0 of {result.model} (the configuration in use when the study began) scored "
            f"{result.metric} {first.value:.4f}; the best {result.best_score:.4f}"
        )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
