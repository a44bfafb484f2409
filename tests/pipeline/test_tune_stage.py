"""The tune stage (issue 16): it tunes on the build's train part every ``tune_every`` runs, the
train stage fits its choice in between, and a per-user holdout takes rating data through the
whole pipeline."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from recforge.artifacts import ModelRegistry
from recforge.data.interactions import Interactions
from recforge.evaluation import tune
from recforge.pipeline import run_pipeline
from recforge.pipeline.state import Run
from recforge.pipeline.tune_stage import load_tuned, tuned_path
from tests.pipeline.conftest import GOOD, before, drop, make_config

pytest.importorskip("optuna")


def test_tunes_every_n_runs_and_train_fits_the_choice_in_between(home, events):
    config = make_config(home, tune_every=2, tune_model="itemknn", tune_budget="2s")
    early, late = before(events, 0.5)
    middle, last = before(late, 0.5)
    drop(home, early, "a.parquet")
    first = run_pipeline(home, config)
    run = Run.load(first.path)
    tuned = run.result("tune")
    assert tuned["reason"] == "nothing tuned yet" and tuned["model"] == "itemknn"
    assert tuned["folds"] == 3 and tuned["trials"] >= 2 and tuned["seconds"] >= 2.0
    assert load_tuned(home)["params"] == tuned["params"]
    trained = run.result("train")
    assert trained["model"] == "itemknn" and trained["params"] == tuned["params"]
    assert trained["source"] == f"tuned by run {run.id}"
    # the tuned choice is what tune() finds on that build's train part with the same settings
    train = Interactions.load(f"{run.result('build')['path']}/train")
    again = tune("itemknn", train=train, metric="ndcg,map", trials=tuned["trials"], random_state=0,
                 show_progress=False)  # fmt: skip
    assert again.best_params == tuned["params"]
    version = ModelRegistry(home).get(first.version)
    assert version.manifest["model"] == "itemknn"

    drop(home, middle, "b.parquet")
    second = Run.load(run_pipeline(home, config).path)
    assert second.result("tune") == {"skipped": f"not due (tuned by run {run.id})"}
    assert second.result("train")["params"] == tuned["params"]  # the choice, on the new build

    drop(home, last, "c.parquet")
    third = Run.load(run_pipeline(home, config).path)
    assert third.result("tune")["reason"] == "tuned 2 runs ago (every 2)"
    assert load_tuned(home)["run_id"] == third.id


def test_off_by_default_and_train_uses_the_config(home, events):
    drop(home, events)
    run = Run.load(run_pipeline(home, make_config(home)).path)
    assert run.result("tune") == {"skipped": "tune_every = 0"}
    assert run.result("train")["model"] == GOOD and run.result("train")["source"] == "config"
    assert not tuned_path(home).exists()


def test_a_bad_tune_model_fails_the_stage_clearly(home, events):
    drop(home, events)
    from recforge.errors import RecforgeError

    with pytest.raises(RecforgeError, match="tune_model 'nope' is neither auto nor a model"):
        run_pipeline(home, make_config(home, tune_every=1, tune_model="nope"))


def ratings(events: pa.Table) -> pa.Table:
    """The generated events as ratings 1..5 (one per pair), as MovieLens would give them."""
    rng = np.random.default_rng(0)
    n = events.num_rows
    return events.set_column(
        events.column_names.index("event_type"), "event_type", pa.array(["rating"] * n)
    ).set_column(events.column_names.index("value"), "value", pa.array(rng.integers(1, 6, n).astype(float)))


def test_a_per_user_holdout_takes_ratings_through_the_pipeline(home, events):
    config = make_config(home, holdout_per_user=0.2)
    config.weighting.half_life_days = 0.0
    drop(home, ratings(events))
    result = run_pipeline(home, config)
    run = Run.load(result.path)
    built = run.result("build")
    assert built["cut"] is None and built["holdout"] == {"holdout": "per_user", "per_user": 0.2}
    assert built["split"]["method"] == "random" and built["split"]["test_pairs"] > 0
    assert result.outcome == "published" and result.ndcg["candidate"] > result.ndcg["popular"]
    # a second run on the same events: the same split, nothing new
    again = run_pipeline(home, config)
    assert again.outcome == "unchanged" and again.version == result.version
    # a new configuration is judged against the published one by refitting it (no cut)
    config.model.params[GOOD] = {"delay": 0.0}
    third = Run.load(run_pipeline(home, config).path)
    published = third.result("evaluate")["published"]
    assert published["method"] in ("refit", "same-config") and "per-user holdout" in published["note"]
    assert json.loads((third.path / "state.json").read_text())["status"] == "succeeded"
