"""A tuning study at a glance: every trial's metrics against each other and against each
hyperparameter, the chosen trial marked (``recforge tune --plot study.png``).

One row per metric (the maximised one first). The first column shows the first metric against
the trial number (how the search went) and every other metric against the first (do they
agree?); then one column per hyperparameter (``family.parameter`` when several model families
were searched), the metric against the value drawn. Complete trials are dots (one colour per
family), pruned trials small grey crosses at the partial score where they were stopped, the
chosen trial a red star. Parameters spanning more than two decades are drawn on a log axis,
categorical ones at evenly spaced ticks.

Drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot, no GUI), as
:func:`recforge.evaluation.report.plot_report` is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recforge.evaluation.report import LABELS
from recforge.evaluation.study import TrialResult, TuneResult

__all__ = ["plot_study"]

COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#bcbd22")


def plot_study(result: TuneResult, path: str | Path, *, dpi: int = 110) -> Path:
    """Draw ``result``'s trials as a PNG at ``path`` (see the module doc); returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    trials = [t for t in result.trials if t.scores and t.state in ("complete", "pruned")]
    metrics = [
        m for m in dict.fromkeys((*result.metrics, "ndcg", "map")) if any(m in t.scores for t in trials)
    ]
    several = len({t.model for t in trials}) > 1
    params = list(dict.fromkeys(_key(t, p, several) for t in trials for p in t.params))
    rows, cols = max(len(metrics), 1), 1 + len(params)
    fig = Figure(figsize=(min(2.6 * cols, 40.0), 2.3 * rows + 0.6), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    colours = {m: COLOURS[i % len(COLOURS)] for i, m in enumerate(dict.fromkeys(t.model for t in trials))}
    chosen = _chosen(result)
    for r, metric in enumerate(metrics):
        label = f"{LABELS.get(metric, metric)}@{result.k}"
        first = axes[r][0]
        if r == 0:
            _scatter(first, trials, lambda t: t.number, metric, colours, chosen)
            first.set_xlabel("trial", fontsize=8)
        else:
            _scatter(first, trials, lambda t: t.scores.get(metrics[0]), metric, colours, chosen)
            first.set_xlabel(f"{LABELS.get(metrics[0], metrics[0])}@{result.k}", fontsize=8)
        first.set_ylabel(label, fontsize=8)
        for c, key in enumerate(params, start=1):
            ax = axes[r][c]
            values = {id(t): _param(t, key, several) for t in trials}
            shown = [t for t in trials if values[id(t)] is not None]
            categorical = _categories(values[id(t)] for t in shown)
            _scatter(ax, shown, _position(values, categorical), metric, colours, chosen)
            if categorical is not None:
                ax.set_xticks(range(len(categorical)), categorical, fontsize=7)
            else:
                numbers = np.array([float(values[id(t)]) for t in shown])
                if len(numbers) and numbers.min() > 0 and numbers.max() > 100 * numbers.min():
                    ax.set_xscale("log")
            if r == rows - 1:
                ax.set_xlabel(key, fontsize=8)
    best = ", ".join(f"{key}={_short(v)}" for key, v in result.best_params.items() if key in _tuned(result))
    title = (
        f"{len(trials)} trials ({sum(t.state == 'pruned' for t in trials)} pruned), "
        f"{result.folds} fold{'s' if result.folds > 1 else ''}; chosen: {result.model} "
        f"{result.metric}@{result.k} {result.best_score:.4f} ({best})"
    )
    fig.suptitle(title, fontsize=9)
    if several:
        handles = [
            axes[0][0].scatter([], [], s=12, color=colour, label=model) for model, colour in colours.items()
        ]
        fig.legend(handles=handles, loc="upper right", fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _scatter(ax: Any, trials: list[TrialResult], x: Any, metric: str, colours: dict, chosen: Any) -> None:
    for state in ("pruned", "complete"):
        group = [t for t in trials if t.state == state and metric in t.scores and x(t) is not None]
        if not group:
            continue
        xs = [x(t) for t in group]
        ys = [t.scores[metric] for t in group]
        if state == "pruned":
            ax.scatter(xs, ys, s=10, marker="x", color="#b0b0b0", linewidths=0.8)
        else:
            ax.scatter(xs, ys, s=14, color=[colours[t.model] for t in group], alpha=0.8)
    if chosen is not None and metric in chosen.scores and x(chosen) is not None:
        ax.scatter([x(chosen)], [chosen.scores[metric]], s=120, marker="*", color="#d62728", zorder=5)
    ax.tick_params(labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)


def _position(values: dict[int, Any], categories: list[str] | None) -> Any:
    """A trial's x: its value (``None`` when it has none), or its category's index."""
    index = {v: i for i, v in enumerate(categories or ())}

    def x(trial: TrialResult) -> float | None:
        value = values.get(id(trial))
        if value is None:
            return None
        return float(index[str(value)]) if categories is not None else float(value)

    return x


def _chosen(result: TuneResult) -> TrialResult | None:
    for t in result.trials:
        if t.model == result.model and t.number == result.best_trial and t.state == "complete":
            return t
    return None


def _key(trial: TrialResult, param: str, several: bool) -> str:
    return f"{trial.model}.{param}" if several else param


def _param(trial: TrialResult, key: str, several: bool) -> Any:
    if several:
        model, _, param = key.partition(".")
        return trial.params.get(param) if trial.model == model else None
    return trial.params.get(key)


def _categories(values: Any) -> list[str] | None:
    """The sorted distinct values as labels when any is not a number, else ``None``."""
    values = list(values)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return None
    return sorted({str(v) for v in values})


def _tuned(result: TuneResult) -> set[str]:
    return {key for t in result.trials if t.model == result.model for key in t.params}


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
