"""Running stages: one at a time (for orchestrators) or all of them (:func:`run_pipeline`).

Every entry point holds the pipeline lock (:mod:`~recforge.pipeline.lock`) while it executes
stages, so runs never overlap, whether started by the scheduler, by hand, or by Airflow or
Kubeflow calling ``recforge pipeline <stage>``. The first thing a lock holder does is to mark
any run still recorded as ``running`` as ``interrupted``: only a lock holder may be running,
so that process died.

A stage already ``done`` in a run is not executed again (an orchestrator's retry of a finished
task is a no-op); a stage whose earlier stages are not done is an error naming them.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recforge._progress import Display
from recforge.config import Config
from recforge.errors import RecforgeError
from recforge.pipeline.engine import Engine, LocalEngine
from recforge.pipeline.lock import PipelineLock, lock_path
from recforge.pipeline.stages import STAGE_FUNCTIONS, Context
from recforge.pipeline.state import STAGES, Run, list_runs, now_iso

__all__ = ["RunResult", "run_pipeline", "run_stage"]

log = logging.getLogger("recforge.pipeline")

#: The stages whose results each stage reads.
REQUIRES: dict[str, tuple[str, ...]] = {
    "ingest": (),
    "build": (),
    "tune": ("build",),
    "train": ("build",),
    "evaluate": ("build", "train"),
    "gate": ("train", "evaluate"),
    "precompute": ("build", "train", "evaluate", "gate"),
    "publish": ("train", "gate", "precompute"),
    "prune": (),
}


@dataclass(frozen=True)
class RunResult:
    """How a run ended: ``status`` (``succeeded``, ``open`` when stopped or stages remain,
    ``failed``), ``outcome`` (``published``, ``rejected``, ``unchanged`` or ``None``), the
    version concerned, the NDCG@k of candidate / popularity / published model, the gate's
    reason, and the run's seconds."""

    run_id: str
    path: Path
    status: str
    outcome: str | None
    version: str | None
    reason: str | None
    ndcg: dict[str, float | None]
    seconds: float
    stopped: bool = False

    @classmethod
    def of(cls, run: Run, seconds: float, stopped: bool = False) -> RunResult:
        stages = run.state["stages"]
        published = (stages.get("publish") or {}).get("result") or {}
        gate = (stages.get("gate") or {}).get("result") or {}
        precomputed = (stages.get("precompute") or {}).get("result") or {}
        metrics = ((stages.get("evaluate") or {}).get("result") or {}).get("metrics") or {}
        ndcg = {name: values.get("ndcg") for name, values in metrics.items()}
        return cls(
            run.id,
            run.path,
            run.status,
            run.state.get("outcome"),
            published.get("version") or precomputed.get("version"),
            gate.get("reason"),
            ndcg,
            seconds,
            stopped,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "path": str(self.path),
            "status": self.status,
            "outcome": self.outcome,
            "version": self.version,
            "reason": self.reason,
            "ndcg": self.ndcg,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
        }

    def summary(self) -> str:
        """One line for people."""
        order = ("candidate", "popular", "published")
        scores = ", ".join(f"{n} {self.ndcg[n]:.4f}" for n in order if self.ndcg.get(n) is not None)
        scores = f" (NDCG {scores})" if scores else ""
        if self.stopped:
            return f"run {self.run_id} stopped after {self.seconds:.1f} s; resume with --run-id {self.run_id}"
        if self.outcome == "published":
            return f"run {self.run_id}: published {self.version}{scores} in {self.seconds:.1f} s"
        if self.outcome == "rejected":
            return (
                f"run {self.run_id}: rejected {self.version}: {self.reason}{scores} in {self.seconds:.1f} s"
            )
        if self.outcome == "unchanged":
            return (
                f"run {self.run_id}: no new model, data and settings unchanged ({self.version} stands) "
                f"in {self.seconds:.1f} s"
            )
        return f"run {self.run_id}: {self.status} in {self.seconds:.1f} s"


def run_pipeline(
    home: str | Path,
    config: Config,
    *,
    run_id: str | None = None,
    model: str | None = None,
    engine: Engine | None = None,
    should_stop: Callable[[], bool] | None = None,
    display: Display = "auto",
) -> RunResult:
    """Run every stage in order under the pipeline lock; returns how the run ended.

    ``run_id`` names the run (resuming it, stages already done skipped, when it exists);
    ``model`` overrides ``[model] name``; ``display`` is how the fit shows its progress
    (:func:`recforge._progress.fit_report`); ``engine`` is where the stages that grow with the
    data run (default: this machine); ``should_stop`` is asked before each stage, and a
    run told to stop is left ``open`` (resumable) after the stage in progress. A stage that
    raises marks the run ``failed`` and the exception propagates. Raises
    :class:`~recforge.pipeline.lock.PipelineBusy` when another process holds the lock.
    """
    started = time.perf_counter()
    ctx = Context(Path(home), config, model=model, display=display, engine=engine or LocalEngine())
    with PipelineLock(lock_path(home, config)):
        _mark_interrupted(ctx.home)
        run = Run.open_or_create(ctx.home, run_id) if run_id else Run.create(ctx.home)
        log.info("run %s: started (engine %s)", run.id, ctx.engine.name)
        for stage in STAGES:
            if should_stop is not None and should_stop():
                run.update(status="open", pid=None)
                log.info("run %s: stopped before %s", run.id, stage)
                return RunResult.of(run, time.perf_counter() - started, stopped=True)
            _execute(ctx, run, stage)
    return RunResult.of(run, time.perf_counter() - started)


def run_stage(
    home: str | Path,
    config: Config,
    stage: str,
    *,
    run_id: str | None = None,
    model: str | None = None,
    display: Display = "auto",
    engine: Engine | None = None,
) -> tuple[Run, dict[str, Any]]:
    """Execute one stage under the pipeline lock (on ``engine``, default this machine); returns
    the run and the stage's result.

    Without ``run_id`` the stage joins the newest run, unless that run has finished or already
    did this stage, in which case a new run starts.
    """
    if stage not in STAGE_FUNCTIONS:
        raise RecforgeError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    ctx = Context(Path(home), config, model=model, display=display, engine=engine or LocalEngine())
    with PipelineLock(lock_path(home, config)):
        _mark_interrupted(ctx.home)
        if run_id:
            run = Run.open_or_create(ctx.home, run_id)
        else:
            runs = list_runs(ctx.home)
            latest = runs[-1] if runs else None
            reusable = latest is not None and not latest.finished and not latest.done(stage)
            run = latest if reusable and latest is not None else Run.create(ctx.home)
        result = _execute(ctx, run, stage)
    return run, result


def _execute(ctx: Context, run: Run, stage: str) -> dict[str, Any]:
    """Execute ``stage`` in ``run`` unless done; record its status, result or error."""
    if run.done(stage):
        log.info("run %s: %s already done", run.id, stage)
        return run.result(stage)
    missing = [name for name in REQUIRES[stage] if not run.done(name)]
    if missing:
        raise RecforgeError(
            f"stage {stage} needs {', '.join(missing)} first in pipeline run {run.id} "
            f"(recforge pipeline {missing[0]} --run-id {run.id})"
        )
    run.update(status="running", pid=os.getpid(), error=None)
    run.set_stage(
        stage, status="running", started=now_iso(), finished=None, error=None, engine=ctx.engine.name
    )
    started = time.perf_counter()
    try:
        result = STAGE_FUNCTIONS[stage](ctx, run)
    except BaseException as error:
        message = " ".join(str(error).split()) or type(error).__name__
        run.set_stage(
            stage,
            status="failed" if isinstance(error, Exception) else "interrupted",
            finished=now_iso(),
            seconds=round(time.perf_counter() - started, 3),
            error=message,
            traceback=traceback.format_exc(limit=8),
        )
        run.update(
            status="failed" if isinstance(error, Exception) else "open", pid=None, error=f"{stage}: {message}"
        )
        raise
    run.set_stage(
        stage,
        status="done",
        finished=now_iso(),
        seconds=round(time.perf_counter() - started, 3),
        result=result,
    )
    last = stage == STAGES[-1]
    outcome = result.get("outcome") if stage == "publish" else run.state.get("outcome")
    run.update(status="succeeded" if last else "open", pid=None, outcome=outcome)
    return result


def _mark_interrupted(home: Path) -> None:
    """Runs recorded ``running`` while we hold the lock belong to dead processes."""
    for run in list_runs(home):
        if run.status != "running":
            continue
        for name, stage in run.state["stages"].items():
            if stage.get("status") == "running":
                run.state["stages"][name]["status"] = "interrupted"
        run.update(status="interrupted", pid=None, error="its process died mid-stage")
        log.warning("run %s: found interrupted (its process died); its finished stages stay done", run.id)
