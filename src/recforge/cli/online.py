"""``recforge online report``, ``recforge experiments start | stop | status | report | aa`` and
``recforge simulate``: what the served lists led to, and which version sells more."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from recforge.cli.state import State


def register(app: typer.Typer) -> None:
    online = typer.Typer(help="Online metrics: impressions, click-through, conversion.", no_args_is_help=True)
    app.add_typer(online, name="online")

    @online.command("report")
    def report(
        ctx: typer.Context,
        since: str | None = typer.Option(
            None, "--since", help="Only the last DURATION (e.g. 7d, 12h); default all."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Impressions, click-through (any event on a shown item) and conversion (the
        [experiments] conversion_types) per model version and source, and by position."""
        from recforge.online.rates import online_report
        from recforge.pipeline.holdout import parse_duration

        state: State = ctx.obj
        window = timedelta(seconds=parse_duration(since)) if since else None
        result = online_report(state.home, state.config, window)
        if as_json:
            typer.echo(json.dumps(result))
            return
        typer.echo(
            f"{result['impressions']:,} impressions since {result['since'] or 'the start'}; "
            f"{result['attributed_events']:,} of {result['events']:,} events attributed "
            f"({result['named_events']:,} by recommendation_id)"
        )
        typer.echo(f"{'version':<33} {'source':<13} {'impressions':>11} {'users':>8} {'ctr':>7} {'conv':>7}")
        for group in result["groups"]:
            typer.echo(
                f"{group['version']:<33} {group['source']:<13} {group['impressions']:>11,} "
                f"{group['users']:>8,} {_pct(group['ctr']):>7} {_pct(group['conversion_rate']):>7}"
            )
            positions = " ".join(_pct(p["ctr"]) for p in group["by_position"][:10])
            typer.echo(f"{'':<33} ctr by position: {positions}")

    experiments = typer.Typer(help="A/B experiments between two model versions.", no_args_is_help=True)
    app.add_typer(experiments, name="experiments")

    @experiments.command("start")
    def start(
        ctx: typer.Context,
        name: str = typer.Argument(..., help="A new name (letters, digits, '.', '_', '-')."),
        control: str = typer.Option(..., "--control", help="Version of the control arm, or 'current'."),
        treatment: str = typer.Option(..., "--treatment", help="Version of the treatment arm, or 'current'."),
        share: float = typer.Option(
            0.5, "--share", help="Share of users in the treatment arm (0 < share < 1)."
        ),
    ) -> None:
        """Start serving each user from one arm (sticky). Running servers pick it up at their next
        poll (serving.reload_poll_seconds)."""
        from recforge.online.experiments import ExperimentBook

        state: State = ctx.obj
        experiment = ExperimentBook(state.home).start(name, control, treatment, share)
        typer.echo(
            f"started experiment {experiment.name}: control {experiment.control}, treatment "
            f"{experiment.treatment}, {experiment.share:.0%} of users in treatment"
        )

    @experiments.command("stop")
    def stop(ctx: typer.Context, name: str = typer.Argument(..., help="The running experiment.")) -> None:
        """Stop an experiment: everyone is served the published version again (its report stays)."""
        from recforge.online.experiments import ExperimentBook

        state: State = ctx.obj
        experiment = ExperimentBook(state.home).stop(name)
        typer.echo(f"stopped experiment {experiment.name} at {experiment.stopped}")

    @experiments.command("status")
    def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Every experiment: arms, share, when it started and stopped."""
        from dataclasses import asdict

        from recforge.online.experiments import ExperimentBook

        state: State = ctx.obj
        book = ExperimentBook(state.home).all()
        if as_json:
            typer.echo(json.dumps([{**asdict(e), "running": e.running} for e in book]))
            return
        if not book:
            typer.echo("no experiments")
            return
        for e in book:
            state_text = "running" if e.running else f"stopped {e.stopped}"
            typer.echo(
                f"{e.name}: control {e.control}, treatment {e.treatment}, share {e.share:g}, "
                f"started {e.started}, {state_text}"
            )

    @experiments.command("report")
    def experiment_report_command(
        ctx: typer.Context,
        name: str = typer.Argument(..., help="The experiment."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Each arm's users and rates, the versions it served and when, the difference with its
        95% confidence interval and p-value, and the verdict."""
        from recforge.online.experiments import ARMS, experiment_report

        state: State = ctx.obj
        result = experiment_report(state.home, state.config, name)
        if as_json:
            typer.echo(json.dumps(result))
            return
        e = result["experiment"]
        typer.echo(
            f"experiment {e['name']} ({e['status']}, started {e['started']}); "
            f"deciding metric: {result['metric']}"
        )
        for arm in ARMS:
            a = result["arms"][arm]
            typer.echo(
                f"  {arm:<9} serves {a['serves']}: {a['users']:,} users, {a['impressions']:,} impressions; "
                f"users who clicked {_pct(a['click_rate'])}, converted {_pct(a['convert_rate'])}"
            )
            for served in a["served"]:
                typer.echo(
                    f"            {served['version']} from {served['first']} to {served['last']} "
                    f"({served['impressions']:,} impressions)"
                )
        for metric, c in result["comparisons"].items():
            if c["difference"] is None:
                typer.echo(f"  {metric}: no data yet")
                continue
            low, high = c["ci95"]
            p_value = "n/a" if c["p_value"] is None else f"{c['p_value']:.3g}"
            typer.echo(
                f"  {metric}: treatment - control = {c['difference']:+.4f} "
                f"(95% CI {low:+.4f} .. {high:+.4f}), p = {p_value}"
            )
        typer.echo(f"verdict: {result['verdict']}")

    @experiments.command("aa")
    def aa(
        ctx: typer.Context,
        repetitions: int = typer.Option(100, "--repetitions", help="Random re-splits of the recorded users."),
        experiment: str | None = typer.Option(
            None, "--experiment", help="Only this experiment's impressions."
        ),
        version: str | None = typer.Option(None, "--version", help="Only this version's impressions."),
        since: str | None = typer.Option(None, "--since", help="Only the last DURATION (e.g. 7d)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """A/A check on recorded traffic: split the users at random many times and count the
        splits in which a winner would be declared (about alpha of them when all is well)."""
        from recforge.online.experiments import aa_test
        from recforge.pipeline.holdout import parse_duration

        state: State = ctx.obj
        start = datetime.now(UTC) - timedelta(seconds=parse_duration(since)) if since else None
        result = aa_test(
            state.home,
            state.config,
            repetitions=repetitions,
            since=start,
            experiment=experiment,
            version=version,
        )
        if as_json:
            typer.echo(json.dumps(result))
            return
        typer.echo(
            f"{result['users']:,} users ({result['impressions']:,} impressions), {result['metric']} rate "
            f"{_pct(result['hit_rate'])}: a winner in {result['winners']} of {result['repetitions']} random "
            f"splits (alpha {result['alpha']:g})"
        )

    @app.command("simulate")
    def simulate_command(
        ctx: typer.Context,
        host: str = typer.Option(..., "--host", help="Server URL, e.g. http://127.0.0.1:8000."),
        requests: int = typer.Option(..., "--requests", help="Recommendation requests to make."),
        tastes: Path = typer.Option(
            ..., "--tastes", help="A generated events file (its .tastes.npz beside it) or the .tastes.npz."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the users drawn and what they do."),
        k: int = typer.Option(10, "--k", help="Items asked per request."),
        concurrency: int = typer.Option(8, "--concurrency", help="Requests in flight at once."),
        untagged: float = typer.Option(
            0.0, "--untagged", help="Share of answers whose events are posted without recommendation_id."
        ),
        api_key: str | None = typer.Option(
            None, "--api-key", help="Key to post events (default: the first of serving.api_keys)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Drive a running server with the synthetic users of a generated file: each asks for
        recommendations, clicks and buys with a probability given by its true affinity to each
        shown item, and the events are posted with the answer's recommendation_id."""
        from recforge.online.simulator import load_tastes, simulate

        state: State = ctx.obj
        keys = state.config.serving.api_keys
        key = api_key or (keys[0] if keys else None)
        result = simulate(
            host,
            load_tastes(tastes),
            requests,
            seed=seed,
            k=k,
            concurrency=concurrency,
            untagged=untagged,
            api_key=key,
        ).to_dict()
        if as_json:
            typer.echo(json.dumps(result))
        else:
            typer.echo(
                f"{result['requests']:,} requests ({result['failures']} failed) in {result['seconds']} s: "
                f"{result['clicks']:,} clicks, {result['purchases']:,} purchases, "
                f"{result['events_posted']:,} events stored"
            )
            for arm, counts in result["by_arm"].items():
                typer.echo(f"  {arm}: {_counts(counts)}")
        if result["failures"]:
            raise typer.Exit(1)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value:,}" for key, value in counts.items())
