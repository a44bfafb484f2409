"""``recforge train | evaluate | precompute`` and ``recforge pipeline run | schedule | status |
<stage>``: training, evaluation and the retraining pipeline."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import typer

from recforge._progress import Display
from recforge.cli.state import State, existing_home
from recforge.config import Config, load_config

STAGE_HELP = {
    "ingest": "Ingest the event files waiting in the inbox; move them to inbox/done/.",
    "build": "Build the train part and holdout from the stored events (reused when unchanged).",
    "tune": "Tune on the build's train part every [pipeline] tune_every runs (else skip).",
    "train": "Fit the model on the build's train part (reused when data and settings are unchanged).",
    "evaluate": "Score candidate, popularity and published model on the holdout.",
    "gate": "Decide whether the candidate may replace the published model (NDCG@k).",
    "precompute": "Precompute the candidate's lists and store it as a model version.",
    "publish": "Publish the candidate when the gate accepted it.",
    "prune": "Delete old model versions, run records, builds and fitted candidates.",
}


class _StderrHandler(logging.Handler):
    """Log lines to whatever ``sys.stderr`` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must not raise
            self.handleError(record)


def _log_to_stderr(debug: bool, names: tuple[str, ...] = ("recforge.pipeline", "recforge.spark")) -> None:
    """The pipeline's and the Spark engine's progress lines on stderr (``names``: the loggers)."""
    for name in names:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG if debug else logging.INFO)
        if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
            handler = _StderrHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
            logger.addHandler(handler)


def _config(ctx: typer.Context, config_file: Path | None) -> Config:
    """The global config, or ``config_file`` loaded in its place (``--home`` still wins; else
    the file's ``home``, which the command then works in)."""
    state: State = ctx.obj
    if config_file is None:
        return state.config
    root = ctx.find_root()
    home = root.params.get("home")
    return load_config(config_file, overrides={"home": str(home)} if home else None)


def register(app: typer.Typer) -> None:
    config_option = typer.Option(None, "--config", help="TOML config file (instead of the global --config).")
    engine_option = typer.Option(
        None,
        "--engine",
        help="local (one machine) or spark (recforge[spark] and Java 17). Default: [engine] name.",
    )
    master_option = typer.Option(
        None, "--master", help="Spark master URL, e.g. spark://host:7077 (default: [engine] master)."
    )
    memory_option = typer.Option(
        None, "--driver-memory", help="Spark driver memory (default: [engine] driver_memory)."
    )
    store_option = typer.Option(None, "--store", help="Also write the lists into this Redis list store.")
    quiet_option = typer.Option(False, "--quiet", "-q", help="No progress while fitting.")
    set_option = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="A hyperparameter of the model, e.g. --set factors=128 (repeat).",
    )

    @app.command("train")
    def train(
        ctx: typer.Context,
        model: str | None = typer.Option(None, "--model", help="Model to fit (default: [model] name)."),
        config_file: Path | None = config_option,
        engine: str | None = engine_option,
        master: str | None = master_option,
        driver_memory: str | None = memory_option,
        store: str | None = store_option,
        assignments: list[str] = set_option,
        quiet: bool = quiet_option,
        evaluate_first: bool = typer.Option(
            False,
            "--evaluate",
            help="First score the configuration on [pipeline]'s holdout (fitted on the part before it) "
            "and record those metrics in the version.",
        ),
    ) -> None:
        """Fit a model on the latest build (recforge build) and save it as a candidate version
        with its precomputed lists (publish it with recforge models publish). With --engine spark:
        ALS on a Spark cluster, straight from the event store's Parquet segments. Shows each
        iteration's loss (a bar on a terminal, a line each otherwise)."""
        from recforge.cli.engines import open_engine
        from recforge.cli.overrides import with_params_for
        from recforge.pipeline.versions import train_version

        config = _config(ctx, config_file)
        name = model or config.model.name
        config = with_params_for(config, [name], assignments)
        display: Display = "quiet" if quiet else "auto"
        metrics = _holdout_metrics(config, name) if evaluate_first else None
        _log_to_stderr(_debug(ctx), names=("recforge.spark",))  # the fit's own lines: train_version
        with open_engine(config, engine, master=master, driver_memory=driver_memory) as chosen:
            info, seconds = train_version(
                chosen,
                existing_home(Path(config.home)),
                config,
                name,
                store,
                display=display,
                metrics=metrics,
            )
        manifest = info.manifest
        typer.echo(
            f"trained {manifest['model']} on {manifest['n_users']:,} users x {manifest['n_items']:,} items "
            f"in {seconds:.1f} s: candidate version {info.version}"
        )

    @app.command("evaluate")
    def evaluate(
        ctx: typer.Context,
        version: str | None = typer.Option(
            None, "--version", help="Model version to evaluate (its served lists)."
        ),
        model: str | None = typer.Option(
            None,
            "--model",
            help="Model configurations to fit on the train part, comma-separated: als,bpr,itemknn,popular.",
        ),
        metric: str | None = typer.Option(
            None,
            "--metric",
            help="Metrics, comma-separated (default: precision,recall,ndcg,map,hit_rate,mrr,coverage); "
            "rmse,mae for rating data.",
        ),
        assignments: list[str] = set_option,
        holdout: str | None = typer.Option(
            None,
            "--holdout",
            help="Temporal holdout: fraction (0.1 or 10%), span before the newest event (7d, 12h) or a "
            "cut time (ISO 8601). Default: the version's own cut, else [pipeline] holdout.",
        ),
        k: int | None = typer.Option(None, "--k", min=1, help="Metrics @k (default: [pipeline] k)."),
        json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON here."),
        plot_out: Path | None = typer.Option(None, "--plot", help="Draw the metrics chart (PNG) here."),
        config_file: Path | None = config_option,
    ) -> None:
        """Evaluate a model version (default: the published one) or model configurations, each
        fitted on the same train part, on a temporal holdout beside the popularity baseline: one
        table, one JSON, one PNG chart."""
        from recforge.cli.overrides import with_params_for
        from recforge.evaluation.report import print_report
        from recforge.pipeline.holdout import parse_holdout
        from recforge.pipeline.scoring import evaluate_holdout

        config = _config(ctx, config_file)
        models = _names(model)
        config = with_params_for(config, models or [config.model.name], assignments)
        spec = parse_holdout(holdout) if holdout else None
        report = evaluate_holdout(
            existing_home(Path(config.home)),
            config,
            version=version,
            models=models,
            holdout=spec,
            k=k,
            metrics=_names(metric) or None,
        )
        print_report(report)
        if json_out is not None:
            typer.echo(f"wrote {report.write_json(json_out)}")
        if plot_out is not None:
            typer.echo(f"wrote {report.plot(plot_out)}")

    @app.command("precompute")
    def precompute(
        ctx: typer.Context,
        version: str | None = typer.Option(
            None, "--version", help="Version to recompute (default: published)."
        ),
        config_file: Path | None = config_option,
        engine: str | None = engine_option,
        master: str | None = master_option,
        driver_memory: str | None = memory_option,
        store: str | None = store_option,
    ) -> None:
        """Recompute a version's lists with the [pipeline] k_users / k_items / k_popular sizes
        into a new candidate version (--engine spark: the distributed top-K)."""
        from recforge.cli.engines import open_engine
        from recforge.pipeline.versions import precompute_version

        config = _config(ctx, config_file)
        _log_to_stderr(_debug(ctx))
        with open_engine(config, engine, master=master, driver_memory=driver_memory) as chosen:
            info = precompute_version(chosen, existing_home(Path(config.home)), config, version, store)
        manifest = info.manifest
        typer.echo(
            f"precomputed {manifest['k_users']} items per user, {manifest['k_items']} per item: "
            f"version {info.version} ({info.status})"
        )

    pipeline = typer.Typer(
        help="The retraining pipeline: ingest, build, train, evaluate, gate, precompute, publish, prune.",
        no_args_is_help=True,
    )
    app.add_typer(pipeline, name="pipeline")

    @pipeline.command("run")
    def run(
        ctx: typer.Context,
        run_id: str | None = typer.Option(None, "--run-id", help="Name the run; an existing run resumes."),
        model: str | None = typer.Option(None, "--model", help="Model to fit (default: [model] name)."),
        as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
        quiet: bool = quiet_option,
        engine: str | None = engine_option,
        master: str | None = master_option,
        driver_memory: str | None = memory_option,
    ) -> None:
        """Run every stage once: ingest -> build -> train -> evaluate -> gate -> precompute ->
        publish -> prune. With --engine spark the build, the fit, the evaluation's lists and the
        precomputed lists run on a Spark cluster."""
        from recforge.cli.engines import open_engine
        from recforge.pipeline.runner import run_pipeline

        state: State = ctx.obj
        _log_to_stderr(state.debug)
        display: Display = "quiet" if quiet else "auto"
        with open_engine(state.config, engine, master=master, driver_memory=driver_memory) as chosen:
            result = run_pipeline(
                state.writable_home(),
                state.config,
                run_id=run_id,
                model=model,
                engine=chosen,
                display=display,
            )
        typer.echo(json.dumps(result.to_dict(), sort_keys=True) if as_json else result.summary())

    @pipeline.command("schedule")
    def schedule(
        ctx: typer.Context,
        every: str | None = typer.Option(
            None,
            "--every",
            help="Interval between run starts: 30s, 10m, 1h (default: [pipeline] schedule_every).",
        ),
        max_runs: int | None = typer.Option(None, "--max-runs", min=1, help="Stop after this many runs."),
        model: str | None = typer.Option(None, "--model", help="Model to fit (default: [model] name)."),
        engine: str | None = engine_option,
        master: str | None = master_option,
        driver_memory: str | None = memory_option,
    ) -> None:
        """Run the pipeline every interval until stopped (SIGTERM or Ctrl-C: the current run
        stops after its stage). Runs never overlap; a failed run is logged and counted."""
        from recforge.cli.engines import open_engine
        from recforge.pipeline.holdout import parse_duration
        from recforge.pipeline.schedule import Scheduler

        state: State = ctx.obj
        _log_to_stderr(state.debug)
        seconds = parse_duration(every or state.config.pipeline.schedule_every)
        with open_engine(state.config, engine, master=master, driver_memory=driver_memory) as chosen:
            scheduler = Scheduler(
                state.writable_home(), state.config, seconds, model=model, engine=chosen, max_runs=max_runs
            )
            _run_schedule(scheduler, state.home)

    @pipeline.command("status")
    def status(
        ctx: typer.Context,
        limit: int = typer.Option(10, "--limit", min=1, help="How many recent runs to show."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """The most recent pipeline runs: status, outcome, version, the gate's reason."""
        from recforge.pipeline.runner import RunResult
        from recforge.pipeline.state import list_runs

        state: State = ctx.obj
        runs = list_runs(state.existing_home())[-limit:]
        rows = [
            {
                **RunResult.of(r, 0.0).to_dict(),
                "created": r.state.get("created"),
                "error": r.state.get("error"),
            }
            for r in runs
        ]
        for row in rows:
            row.pop("seconds")
            row.pop("stopped")
        if as_json:
            typer.echo(json.dumps(rows, sort_keys=True, indent=2))
            return
        if not rows:
            typer.echo(f"no pipeline runs under {state.home}")
        for row in rows:
            detail = row["error"] or row["reason"] or ""
            typer.echo(
                f"{row['run_id']}  {row['created']}  {row['status']:<11} {row['outcome'] or '-':<9} "
                f"{row['version'] or '-'}  {detail}".rstrip()
            )

    for stage in STAGE_HELP:
        _register_stage(pipeline, stage)


def _run_schedule(scheduler: Any, home: Path) -> None:
    """Run the loop until it is told to stop (SIGTERM, SIGINT), then print its counts."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def stop(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("recforge.pipeline").info(
            "scheduler: %s received, stopping", signal.Signals(signum).name
        )
        scheduler.stop()
        for sig, handler in previous.items():  # a second signal acts at once
            signal.signal(sig, handler)

    for sig in previous:
        signal.signal(sig, stop)
    logging.getLogger("recforge.pipeline").info(
        "scheduler: a pipeline run every %s on %s (pid %d)", _seconds(scheduler.every), home, os.getpid()
    )
    try:
        summary = scheduler.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo(f"scheduler stopped: {summary.line()}")


def _register_stage(pipeline: typer.Typer, stage: str) -> None:
    def command(
        ctx: typer.Context,
        run_id: str | None = typer.Option(
            None, "--run-id", help="The run this stage belongs to (default: the current run, or a new one)."
        ),
        model: str | None = typer.Option(None, "--model", help="Model to fit (train only)."),
        as_json: bool = typer.Option(False, "--json", help="Print the stage's result as JSON."),
        engine: str | None = typer.Option(None, "--engine", help="local or spark (default: [engine] name)."),
        master: str | None = typer.Option(
            None, "--master", help="Spark master URL (default: [engine] master)."
        ),
    ) -> None:
        from recforge.cli.engines import open_engine
        from recforge.errors import RecforgeError
        from recforge.pipeline.runner import run_stage

        state: State = ctx.obj
        if model is not None and stage != "train":
            raise RecforgeError("--model applies to the train stage only")
        _log_to_stderr(state.debug)
        with open_engine(state.config, engine, master=master) as chosen:
            run, result = run_stage(
                state.writable_home(), state.config, stage, run_id=run_id, model=model, engine=chosen
            )
        if as_json:
            typer.echo(json.dumps({"run_id": run.id, "stage": stage, "result": result}, sort_keys=True))
        else:
            typer.echo(f"run {run.id}: {stage} done" + _stage_note(stage, result))

    command.__doc__ = STAGE_HELP[stage]
    pipeline.command(stage)(command)


def _holdout_metrics(config: Config, model: str) -> dict[str, Any]:
    """The configuration's metrics (``ndcg@10``, ...) on ``[pipeline]``'s holdout, printed too."""
    from recforge.evaluation.report import print_report
    from recforge.pipeline.scoring import evaluate_holdout

    report = evaluate_holdout(Path(config.home), config, models=[model])
    print_report(report)
    evaluation = report.evaluations[-1]
    return {
        f"{name}@{report.k}": (value if math.isfinite(value) else None)
        for name, value in evaluation.metrics.items()
    }


def _names(text: str | None) -> list[str]:
    """``"als, bpr"`` as ``["als", "bpr"]`` (empty for ``None``)."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _debug(ctx: typer.Context) -> bool:
    state: State = ctx.obj
    return state.debug


def _stage_note(stage: str, result: dict[str, Any]) -> str:
    if stage == "publish":
        return f" ({result['outcome']}: {result['version']})"
    if stage == "gate":
        return f" ({'accepted' if result['accepted'] else 'rejected'}: {result['reason']})"
    if stage == "precompute":
        return f" (version {result['version']})"
    return ""


def _seconds(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min"
