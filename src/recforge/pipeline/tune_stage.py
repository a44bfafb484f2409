"""The tune stage: every ``[pipeline] tune_every`` runs, tune on the build's train part, and the
tuned choice that the train stage then fits.

When due, the stage runs :func:`recforge.tune` on the build's train part (never its holdout,
which the gate judges on): ``[pipeline] tune_model`` (``auto``: every family, the best wins),
for ``[pipeline] tune_budget``, NDCG@k maximised over per-user folds of that part
(:func:`~recforge.evaluation.tuning.default_folds`), each family's ``[model.<name>]`` parameters
outside its search space held fixed. The choice (model and constructor arguments, with its
validation scores) is written atomically to ``<home>/tuning/pipeline.json``; while it exists
and ``tune_every`` is positive, the train stage fits it instead of ``[model]``
(:func:`model_choice`), so the runs in between reuse it.

The stage is due when ``tune_every`` is positive and there is no tuned choice yet, the choice
was made for another ``tune_model``, its run record is gone, or ``tune_every`` runs (this one
included) have started since the run that made it. Otherwise it records why it skipped.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from recforge._files import write_json_atomic
from recforge.config import Config
from recforge.data.interactions import Interactions
from recforge.errors import RecforgeError
from recforge.evaluation.tuning import AUTO, tune
from recforge.models.registry import MODELS, automl_models
from recforge.pipeline.holdout import parse_duration
from recforge.pipeline.state import Run, list_runs
from recforge.pipeline.store_tuning import current_configuration
from recforge.pipeline.training import model_params

__all__ = ["load_tuned", "model_choice", "tune_build", "tune_due", "tuned_path"]

log = logging.getLogger("recforge.pipeline")


def tuned_path(home: str | Path) -> Path:
    """``<home>/tuning/pipeline.json``: the tune stage's latest choice."""
    return Path(home) / "tuning" / "pipeline.json"


def load_tuned(home: str | Path) -> dict[str, Any] | None:
    """The tune stage's latest choice, or ``None``."""
    path = tuned_path(home)
    if not path.exists():
        return None
    return dict(json.loads(path.read_text()))


def tune_due(home: str | Path, config: Config, run: Run) -> str | None:
    """Why the tune stage tunes in ``run`` (a reason), or ``None`` when it is not due."""
    every = config.pipeline.tune_every
    if every < 0:
        raise RecforgeError(f"[pipeline] tune_every must be 0 (never) or positive, got {every}")
    if every == 0:
        return None
    tuned = load_tuned(home)
    if tuned is None:
        return "nothing tuned yet"
    if tuned.get("tune_model") != config.pipeline.tune_model:
        return f"tune_model is now {config.pipeline.tune_model!r}"
    ids = [r.id for r in list_runs(home)]
    if tuned.get("run_id") not in ids or run.id not in ids:
        return "the run that tuned is gone"
    since = ids.index(run.id) - ids.index(tuned["run_id"])
    return f"tuned {since} runs ago (every {every})" if since >= every else None


def tune_build(home: str | Path, config: Config, run: Run, train: Interactions, build: str) -> dict[str, Any]:
    """The stage: tune on ``train`` (the build ``build``'s train part) when due, else skip."""
    reason = tune_due(home, config, run)
    if reason is None:
        tuned = load_tuned(home)
        why = (
            "tune_every = 0"
            if config.pipeline.tune_every == 0
            else f"not due (tuned by run {tuned and tuned['run_id']})"
        )
        log.info("tune: skipped: %s", why)
        return {"skipped": why}
    settings = config.pipeline
    name = settings.tune_model
    if name != AUTO and name not in MODELS:
        raise RecforgeError(
            f"[pipeline] tune_model {name!r} is neither auto nor a model ({', '.join(MODELS)})"
        )
    families = automl_models() if name == AUTO else [name]
    fixed = {family: current_configuration(config, family)[0] for family in families}
    budget = parse_duration(settings.tune_budget)
    started = time.perf_counter()
    result = tune(
        name,
        train=train,
        k=settings.k,
        metric="ndcg,map",
        trials=None,
        timeout=budget,
        random_state=0,
        fixed_params=fixed if name == AUTO else fixed[name],
        show_progress=False,
    )
    seconds = time.perf_counter() - started
    choice = {
        "model": result.model,
        "params": result.best_params,
        "validation": result.best_scores,
        "spread": result.best_spread,
        "folds": result.folds,
        "families": {family: r.best_score for family, r in result.families.items()},
        "trials": len(result.trials),
        "tune_model": name,
        "run_id": run.id,
        "build": build,
        "seconds": round(seconds, 3),
    }
    write_json_atomic(tuned_path(home), json.loads(json.dumps(choice, default=str)))
    log.info(
        "tune: %s (%s) chosen from %d trials in %.0f s: NDCG@%d %.4f on %d folds of the train part",
        result.model,
        ", ".join(f"{k}={v}" for k, v in result.best_params.items()),
        len(result.trials),
        seconds,
        settings.k,
        result.best_scores["ndcg"],
        result.folds,
    )
    return {**choice, "reason": reason}


def model_choice(home: str | Path, config: Config, override: str | None) -> tuple[str, dict[str, Any], str]:
    """``(model, parameters, source)`` the train stage fits: ``override`` with its
    ``[model.<name>]`` parameters, else the tuned choice while ``tune_every`` is positive and
    one exists, else ``[model]``."""
    if override is not None:
        return override, model_params(config, override), "override"
    tuned = load_tuned(home) if config.pipeline.tune_every > 0 else None
    if tuned is not None:
        return str(tuned["model"]), dict(tuned["params"]), f"tuned by run {tuned['run_id']}"
    return config.model.name, model_params(config, config.model.name), "config"
