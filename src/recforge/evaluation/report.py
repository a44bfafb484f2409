"""Evaluation results and their three renderings: a table (rich), JSON, and a PNG chart.

An :class:`Evaluation` is one model's metrics on one holdout; a :class:`Report` holds several
evaluated on the same holdout, one of them optionally the baseline the others are measured
against (``lift = value / baseline_value - 1``).

The chart is drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas: no pyplot,
no global figure state, no GUI backend, so it works in servers and tests alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["LABELS", "Evaluation", "Report", "plot_report", "print_report", "render_table", "write_json"]

#: Short column labels of the metrics.
LABELS: dict[str, str] = {
    "precision": "P",
    "recall": "R",
    "ndcg": "NDCG",
    "ndcg_graded": "gNDCG",
    "map": "MAP",
    "hit_rate": "HR",
    "mrr": "MRR",
    "coverage": "Coverage",
    "rmse": "RMSE",
    "mae": "MAE",
}


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One model's metrics @``k`` on a holdout.

    ``users`` is the number of users evaluated (those with at least one relevant test item that
    is not in their train history), ``relevant`` the number of relevant pairs they hold,
    ``relevant_seen_in_train`` the relevant test pairs left out because the user already has
    them in train. ``per_user`` (when asked for) maps each per-user metric to its values, row
    for row the dense user indices in ``user_indices``.
    """

    name: str
    k: int
    metrics: dict[str, float]
    users: int
    relevant: int
    relevant_seen_in_train: int
    recommend_seconds: float
    metric_seconds: float
    per_user: dict[str, np.ndarray] | None = None
    user_indices: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (no per-user arrays; ``nan`` becomes ``None``)."""
        return {
            "k": self.k,
            "metrics": {name: _finite(value) for name, value in self.metrics.items()},
            "users": self.users,
            "relevant": self.relevant,
            "relevant_seen_in_train": self.relevant_seen_in_train,
            "seconds": {"recommend": self.recommend_seconds, "metrics": self.metric_seconds},
            **({"info": self.info} if self.info else {}),
        }


#: A holdout with fewer evaluated users or relevant pairs than these is too small for its metrics
#: to mean anything (one user with one relevant item scores NDCG 0 or 1): reports warn.
MIN_HOLDOUT_USERS = 20
MIN_HOLDOUT_RELEVANT = 50


@dataclass(frozen=True, eq=False)
class Report:
    """Several models evaluated on the same holdout, and the baseline they are compared with."""

    evaluations: tuple[Evaluation, ...]
    baseline: str | None = None
    split: Mapping[str, Any] | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat().replace("+00:00", "Z"))

    def __post_init__(self) -> None:
        if not self.evaluations:
            raise ValueError("a report needs at least one evaluation")
        names = [e.name for e in self.evaluations]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be distinct, got {names}")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not one of the models {names}")
        if len({e.k for e in self.evaluations}) != 1:
            raise ValueError("all evaluations in a report must use the same k")

    @property
    def k(self) -> int:
        return self.evaluations[0].k

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.evaluations]

    @property
    def metric_names(self) -> list[str]:
        """The metrics of the first evaluation, in its order."""
        return list(self.evaluations[0].metrics)

    def __getitem__(self, name: str) -> Evaluation:
        for evaluation in self.evaluations:
            if evaluation.name == name:
                return evaluation
        raise KeyError(f"no model named {name!r} in the report (have {self.names})")

    @property
    def warnings(self) -> list[str]:
        """What makes these numbers unreliable: a holdout with fewer than
        :data:`MIN_HOLDOUT_USERS` evaluated users or :data:`MIN_HOLDOUT_RELEVANT` relevant pairs."""
        first = self.evaluations[0]
        if first.users >= MIN_HOLDOUT_USERS and first.relevant >= MIN_HOLDOUT_RELEVANT:
            return []
        return [
            f"the holdout is too small to mean anything: {first.users} users with {first.relevant} "
            f"relevant pairs (wanted: at least {MIN_HOLDOUT_USERS} users and {MIN_HOLDOUT_RELEVANT} "
            "pairs); hold out more events"
        ]

    def lift(self, name: str, metric: str) -> float:
        """``value / baseline_value - 1`` for a model and metric (``nan`` without a baseline or
        when the baseline scores 0)."""
        if self.baseline is None:
            return float("nan")
        base = self[self.baseline].metrics.get(metric, float("nan"))
        value = self[name].metrics.get(metric, float("nan"))
        return value / base - 1.0 if base and math.isfinite(base) and math.isfinite(value) else float("nan")

    def to_dict(self) -> dict[str, Any]:
        from recforge._version import __version__

        out: dict[str, Any] = {
            "recforge": __version__,
            "created": self.created,
            "k": self.k,
            "baseline": self.baseline,
            "split": dict(self.split) if self.split is not None else None,
            "models": {e.name: e.to_dict() for e in self.evaluations},
            "warnings": self.warnings,
        }
        if self.baseline is not None:
            out["lift"] = {
                e.name: {m: _finite(self.lift(e.name, m)) for m in e.metrics}
                for e in self.evaluations
                if e.name != self.baseline
            }
        return out

    # renderings (see the functions below) ------------------------------------------------------
    def table(self) -> Table:
        return render_table(self)

    def print(self, console: Console | None = None) -> None:
        print_report(self, console)

    def write_json(self, path: str | Path) -> Path:
        return write_json(self, path)

    def plot(self, path: str | Path) -> Path:
        return plot_report(self, path)


def render_table(report: Report) -> Table:
    """A rich table of every model's metrics, the baseline first; beside each other model's
    value, its relative change against the baseline.

    Up to :data:`MODELS_AS_COLUMNS` models: one row per metric, one column per model. More
    models: one row per model, one column per metric, the change on a second line, so that the
    table still fits an 80-column terminal (seven metrics, any number of models).
    """
    from rich import box
    from rich.table import Table

    k = report.k
    ordered = sorted(report.evaluations, key=lambda e: e.name != report.baseline)
    names = [f"{e.name} (baseline)" if e.name == report.baseline else e.name for e in ordered]
    if len(ordered) <= MODELS_AS_COLUMNS:
        table = Table(title=f"Metrics @{k}", title_justify="left")
        table.add_column("metric", style="bold")
        for name in names:
            table.add_column(name, justify="right")
        for metric in report.metric_names:
            cells = [_cell(report, e, metric, " ") for e in ordered]
            table.add_row(f"{LABELS.get(metric, metric)}@{k}", *cells)
        table.add_row("users", *[str(e.users) for e in ordered], style="dim")
        return table
    counts = {e.users for e in ordered}
    users = str(counts.pop()) if len(counts) == 1 else ", ".join(f"{e.name} {e.users}" for e in ordered)
    table = Table(
        title=f"Metrics @{k}",
        title_justify="left",
        caption=f"users evaluated: {users}",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
    )
    table.add_column("model", style="bold", overflow="fold", min_width=10, max_width=18)
    for metric in report.metric_names:
        table.add_column(LABELS.get(metric, metric), justify="right", no_wrap=True)
    for name, e in zip(names, ordered, strict=True):
        table.add_row(
            name, *[_cell(report, e, m, "\n", brackets=False) for m in report.metric_names], str(e.users)
        )
    return table


#: With more models than this, :func:`render_table` puts the models in rows.
MODELS_AS_COLUMNS = 3


def _cell(report: Report, evaluation: Evaluation, metric: str, separator: str, brackets: bool = True) -> str:
    value = evaluation.metrics.get(metric, float("nan"))
    cell = f"{value:.4f}" if math.isfinite(value) else "n/a"
    lift = report.lift(evaluation.name, metric)
    if evaluation.name != report.baseline and math.isfinite(lift):
        colour = "green" if lift > 0 else "red" if lift < 0 else "white"
        change = f"({lift:+.0%})" if brackets else f"{lift:+.0%}"
        cell += f"{separator}[{colour}]{change}[/{colour}]"
    return cell


def print_report(report: Report, console: Console | None = None) -> None:
    """Print the table (and the split it was measured on) to ``console`` (default: stdout)."""
    from rich.console import Console

    console = console or Console()
    console.print(render_table(report))
    if report.split:
        shown = {key: value for key, value in report.split.items() if not isinstance(value, dict | list)}
        described = ", ".join(f"{key}={value}" for key, value in shown.items() if value is not None)
        console.print(f"split: {described}", highlight=False)
    for warning in report.warnings:
        console.print(f"[yellow]warning: {warning}[/yellow]", highlight=False)


def write_json(report: Report, path: str | Path) -> Path:
    """Write :meth:`Report.to_dict` as indented JSON (strict: no ``NaN``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def plot_report(report: Report, path: str | Path, *, dpi: int = 120) -> Path:
    """Draw a grouped bar chart of every model's metrics (baseline in grey) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = report.metric_names
    n_models = len(report.evaluations)
    width = 0.8 / n_models
    x = np.arange(len(metrics), dtype=np.float64)
    fig = Figure(figsize=(max(6.0, 1.0 + 1.1 * len(metrics) * max(1, n_models) / 2), 4.2), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = iter(["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"])
    top = 0.0
    ordered = sorted(report.evaluations, key=lambda e: e.name != report.baseline)  # baseline first
    for j, e in enumerate(ordered):
        values = np.array([e.metrics.get(m, float("nan")) for m in metrics], dtype=np.float64)
        shown = np.where(np.isfinite(values), values, 0.0)
        top = max(top, float(shown.max(initial=0.0)))
        baseline = e.name == report.baseline
        bars = ax.bar(
            x + (j - (n_models - 1) / 2) * width,
            shown,
            width,
            label=f"{e.name} (baseline)" if baseline else e.name,
            color="#9e9e9e" if baseline else next(colours),
        )
        labels = [f"{v:.3f}" if np.isfinite(v) else "n/a" for v in values]
        ax.bar_label(bars, labels=labels, fontsize=7, padding=2, rotation=90 if n_models > 2 else 0)
    ax.set_xticks(x, [f"{LABELS.get(m, m)}@{report.k}" for m in metrics])
    ax.set_ylim(0.0, max(top * 1.25, 0.05))
    ax.set_ylabel("score")
    counts = {e.users for e in report.evaluations}
    users = (
        str(counts.pop())
        if len(counts) == 1
        else ", ".join(f"{e.name}: {e.users}" for e in report.evaluations)
    )
    title = f"Metrics @{report.k}, {users} users evaluated"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
