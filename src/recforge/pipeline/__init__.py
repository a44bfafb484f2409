"""The retraining pipeline: ingest -> build -> tune -> train -> evaluate -> gate -> precompute
-> publish -> prune, each stage its own idempotent command, chained by :func:`run_pipeline`, run
every interval by :class:`Scheduler`, and callable one by one from Airflow or Kubeflow
(``recforge pipeline <stage> --run-id ID``; see ``deploy/``).

* :mod:`~recforge.pipeline.stages`: the stages, the home layout, and why published models are
  trained on the train part only;
* :mod:`~recforge.pipeline.runner`: executing stages under the lock, run records;
* :mod:`~recforge.pipeline.gate`: the quality gate;
* :mod:`~recforge.pipeline.scoring`: scoring stored versions on a holdout, "same holdout";
* :mod:`~recforge.pipeline.holdout`: the holdout (temporal, or per user);
* :mod:`~recforge.pipeline.tune_stage`: the tune stage every ``tune_every`` runs, and the
  tuned choice the train stage fits;
* :mod:`~recforge.pipeline.schedule`: the schedule loop;
* :mod:`~recforge.pipeline.lock`, :mod:`~recforge.pipeline.state`: the lock and run records.
"""

from recforge.pipeline.gate import GateDecision, decide
from recforge.pipeline.holdout import Holdout, parse_duration, parse_holdout
from recforge.pipeline.lock import PipelineBusy, PipelineLock
from recforge.pipeline.runner import RunResult, run_pipeline, run_stage
from recforge.pipeline.schedule import Scheduler, ScheduleSummary
from recforge.pipeline.stages import Context
from recforge.pipeline.state import STAGES, Run, list_runs

__all__ = [
    "STAGES",
    "Context",
    "GateDecision",
    "Holdout",
    "PipelineBusy",
    "PipelineLock",
    "Run",
    "RunResult",
    "ScheduleSummary",
    "Scheduler",
    "decide",
    "list_runs",
    "parse_duration",
    "parse_holdout",
    "run_pipeline",
    "run_stage",
]
