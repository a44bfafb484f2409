"""Splits, ranking metrics @K, and the evaluation protocol with its report.

* :mod:`~recforge.evaluation.splits`: per-user random holdout, leave-last-n, global temporal cut;
* :mod:`~recforge.evaluation.metrics`: precision, recall, NDCG (binary/graded), MAP, hit rate,
  MRR, coverage @K over a CSR of relevant items and a ``[n_users, k]`` id array;
* :mod:`~recforge.evaluation.protocol`: :func:`evaluate` / :func:`compare` models through their
  served ``recommend`` path, :class:`Evaluator` for repeated (tuning) and per-iteration scoring;
* :mod:`~recforge.evaluation.report`: the table, JSON and PNG chart of a :class:`Report`;
* :mod:`~recforge.evaluation.tuning`: :func:`tune`, Optuna TPE over a model's hyperparameters
  (and the event weighting), or across model families, on validation folds, with pruning and
  resumable studies (one study: :mod:`~recforge.evaluation.study`; its chart:
  :mod:`~recforge.evaluation.study_plot`).
"""

from recforge.evaluation.metrics import (
    METRICS,
    coverage_at_k,
    hit_rate_at_k,
    map_at_k,
    metrics_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from recforge.evaluation.protocol import DEFAULT_METRICS, Evaluator, ValidationCallback, compare, evaluate
from recforge.evaluation.report import Evaluation, Report, plot_report, print_report, render_table, write_json
from recforge.evaluation.splits import Split, leave_last_n_split, per_user_folds, random_split, temporal_split
from recforge.evaluation.study_plot import plot_study
from recforge.evaluation.tuning import TrialResult, TuneResult, WeightingSpace, tune
from recforge.models.spaces import Choice, Range

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "Choice",
    "Evaluation",
    "Evaluator",
    "Range",
    "Report",
    "Split",
    "TrialResult",
    "TuneResult",
    "ValidationCallback",
    "WeightingSpace",
    "compare",
    "coverage_at_k",
    "evaluate",
    "hit_rate_at_k",
    "leave_last_n_split",
    "map_at_k",
    "metrics_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "per_user_folds",
    "plot_report",
    "plot_study",
    "precision_at_k",
    "print_report",
    "random_split",
    "recall_at_k",
    "render_table",
    "temporal_split",
    "tune",
    "write_json",
]
