"""Airflow DAG: the recforge retraining pipeline every 10 minutes, one task per stage.

Each task is a BashOperator running ``recforge pipeline <stage> --run-id <the DAG run's id>``,
chained in the stage order, so one DAG run is one recforge run record and a retried task whose
stage is already done does nothing. ``max_active_runs=1`` keeps DAG runs from overlapping, and
recforge's own pipeline lock keeps them from overlapping anything else on the same home (a
task that finds it held fails and is retried).

Settings, read when the scheduler parses this file: ``RECFORGE_HOME`` (the home, on a disk the
workers share), ``RECFORGE_CONFIG_FILE`` (optional TOML config), ``RECFORGE_BIN`` (the
``recforge`` executable, default from ``PATH``). Copy this file into the DAGs folder.
"""

from __future__ import annotations

import itertools
import os
import shlex
from datetime import datetime, timedelta

from airflow import DAG

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

#: The stages, in order (recforge.pipeline.STAGES).
STAGES = ("ingest", "build", "tune", "train", "evaluate", "gate", "precompute", "publish", "prune")
EVERY = timedelta(minutes=10)

HOME = os.environ.get("RECFORGE_HOME", "/var/lib/recforge")
CONFIG = os.environ.get("RECFORGE_CONFIG_FILE", "")
RECFORGE = os.environ.get("RECFORGE_BIN", "recforge")


def stage_command(stage: str) -> str:
    """The bash command of one stage (``{{ run_id }}`` is rendered by Airflow)."""
    parts = [shlex.quote(RECFORGE), "--home", shlex.quote(HOME)]
    if CONFIG:
        parts += ["--config", shlex.quote(CONFIG)]
    parts += ["pipeline", stage, "--run-id", "'{{ run_id }}'"]
    return " ".join(parts)


with DAG(
    dag_id="recforge_pipeline",
    description="recforge: ingest, build, train, evaluate, gate, precompute, publish, prune",
    schedule=EVERY,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=60),
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["recforge"],
) as dag:
    tasks = [BashOperator(task_id=stage, bash_command=stage_command(stage)) for stage in STAGES]
    for upstream, downstream in itertools.pairwise(tasks):
        upstream >> downstream
