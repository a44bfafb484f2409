"""Whole runs: the happy path, idempotent reruns, resuming, and the gate deciding."""

import json

import pytest

from recforge.artifacts import ModelRegistry
from recforge.data.build import build_interactions, save_interactions
from recforge.data.store import EventStore
from recforge.pipeline import run_pipeline, run_stage
from recforge.pipeline.engine import LocalEngine
from recforge.pipeline.state import STAGES, Run, list_runs
from recforge.pipeline.versions import train_version
from tests.pipeline.conftest import BAD, GOOD, before, drop, make_config


def test_full_run_publishes_and_records_every_stage(home, events):
    drop(home, events)
    result = run_pipeline(home, make_config(home))
    assert result.status == "succeeded" and result.outcome == "published"
    registry = ModelRegistry(home)
    assert registry.current() == result.version
    assert registry.get(result.version).status == "published"
    run = Run.load(result.path)
    assert [run.stage(s)["status"] for s in STAGES] == ["done"] * len(STAGES)
    assert all(run.stage(s)["seconds"] >= 0 for s in STAGES)
    assert result.ndcg["candidate"] > result.ndcg["popular"] > 0
    assert "published" in result.summary() and result.run_id in result.summary()
    assert json.loads((run.path / "state.json").read_text())["outcome"] == "published"
    assert not (home / "inbox" / "events.parquet").exists()


def test_rerun_without_new_data_does_no_work_and_makes_no_version(home, events):
    drop(home, events)
    config = make_config(home)
    first = run_pipeline(home, config)
    second = run_pipeline(home, config)
    assert second.outcome == "unchanged" and second.version == first.version
    run = Run.load(second.path)
    assert run.result("build")["reused"] and run.result("train")["reused"] == first.version
    assert [v.version for v in ModelRegistry(home).list()] == [first.version]
    # new events: a new build, a new fit, a new version
    drop(home, events.slice(0, 100).set_column(0, "event_id", [[f"new{i}" for i in range(100)]]))
    third = run_pipeline(home, config)
    assert third.outcome in ("published", "rejected") and third.version != first.version
    assert not Run.load(third.path).result("build")["reused"]


def test_gate_accepts_better_rejects_worse_and_keeps_the_rejected(home, events):
    drop(home, events)
    first = run_pipeline(home, make_config(home, "popular"))
    assert first.outcome == "published"  # popularity cannot beat itself; nothing was published

    better = run_pipeline(home, make_config(home, GOOD))
    assert better.outcome == "published"
    evaluated = Run.load(better.path).result("evaluate")
    assert evaluated["published"]["version"] == first.version
    assert evaluated["published"]["method"] == "artifact"  # its data ended before the same cut
    assert evaluated["metrics"]["published"] == evaluated["metrics"]["popular"]

    worse = run_pipeline(home, make_config(home, BAD))
    assert worse.outcome == "rejected" and worse.status == "succeeded"
    registry = ModelRegistry(home)
    assert registry.current() == better.version
    rejected = registry.get(worse.version)
    assert rejected.status == "rejected"
    assert (
        "is not above popularity's" in rejected.reason
        and "below (1 - 0.05) x the published" in rejected.reason
    )
    assert rejected.manifest["extra"]["gate"]["accepted"] is False
    assert worse.reason == rejected.reason and "rejected" in worse.summary()
    # kept, and rerunning does not retry or republish it
    again = run_pipeline(home, make_config(home, BAD))
    assert again.outcome == "unchanged" and registry.current() == better.version

    # popularity above nothing but worse than the published model: rejected by the tolerance check
    fallback = run_pipeline(home, make_config(home, "popular", gate_tolerance=0.1))
    assert fallback.outcome == "unchanged"  # the first run's popular version: same train key
    loose = run_pipeline(home, make_config(home, "popular", holdout_fraction=0.15))
    assert loose.outcome == "rejected" and "published model" in loose.reason


def test_first_candidate_below_popularity_is_rejected(home, events):
    drop(home, events)
    result = run_pipeline(home, make_config(home, BAD))
    assert result.outcome == "rejected" and "not above popularity" in result.reason
    assert ModelRegistry(home).current() is None
    assert ModelRegistry(home).get(result.version).status == "rejected"


def test_data_changing_between_runs_scores_the_served_artifact(home, events):
    early, late = before(events, 0.7)
    drop(home, early, "early.parquet")
    first = run_pipeline(home, make_config(home))
    drop(home, late, "late.parquet")
    second = run_pipeline(home, make_config(home))
    evaluated = Run.load(second.path).result("evaluate")
    published = evaluated["published"]
    assert published["version"] == first.version and published["method"] == "artifact"
    # the old model is stale on the new holdout, and scored on the candidate's relevant sets
    assert evaluated["metrics"]["published"]["ndcg"] < evaluated["metrics"]["candidate"]["ndcg"]
    report = json.loads((second.path / "evaluation.json").read_text())
    assert report["models"]["published"]["users"] == report["models"]["candidate"]["users"]


def test_a_published_model_that_saw_the_holdout_is_refitted(home, events):
    EventStore(home).append(events)
    save_interactions(build_interactions(EventStore(home), make_config(home)), home)
    manual, _ = train_version(LocalEngine(), home, make_config(home, "popular"))  # all events: past any cut
    ModelRegistry(home).publish(manual.version)
    result = run_pipeline(home, make_config(home))
    published = Run.load(result.path).result("evaluate")["published"]
    assert published["version"] == manual.version and published["method"] == "refit"
    assert published["metrics"]["ndcg"] == pytest.approx(result.ndcg["popular"])
    assert result.outcome == "published"

    ModelRegistry(home).publish(manual.version)  # same configuration as the next candidate
    same = run_pipeline(home, make_config(home, "popular", holdout_fraction=0.2))
    published = Run.load(same.path).result("evaluate")["published"]
    assert published["method"] == "same-config" and published["metrics"]["ndcg"] == same.ndcg["candidate"]


def test_a_run_killed_mid_stage_resumes_and_a_crash_before_publish_is_finished(home, events):
    drop(home, events)
    config = make_config(home)
    for stage in ("ingest", "build", "train"):
        run_stage(home, config, stage, run_id="crashed")
    run = Run.open(home, "crashed")
    run.update(status="running", pid=999_999_999)  # as a process killed in evaluate leaves it
    run.set_stage("evaluate", status="running")
    resumed = run_pipeline(home, config, run_id="crashed")
    assert resumed.outcome == "published"
    state = Run.open(home, "crashed").state
    assert state["status"] == "succeeded"
    assert state["stages"]["train"]["result"]["fit_seconds"] is not None  # fitted once, not again

    # killed after the version was stored but before it was published: the next run publishes it
    drop(home, events.slice(0, 50).set_column(0, "event_id", [[f"x{i}" for i in range(50)]]))
    for stage in ("ingest", "build", "train", "evaluate", "gate", "precompute"):
        _, result = run_stage(home, config, stage, run_id="died")
    assert ModelRegistry(home).get(result["version"]).status == "candidate"
    finished = run_pipeline(home, config)
    assert finished.outcome == "published" and finished.version == result["version"]
    assert ModelRegistry(home).current() == result["version"]
    runs = {r.id: r.status for r in list_runs(home)}
    assert runs["died"] == "open"


def test_interrupted_runs_are_marked_by_the_next_lock_holder(home, events):
    drop(home, events)
    run_stage(home, make_config(home), "ingest", run_id="dead")
    Run.open(home, "dead").update(status="running", pid=999_999_999)
    run_pipeline(home, make_config(home))
    assert Run.open(home, "dead").status == "interrupted"


def test_should_stop_leaves_the_run_open_and_resumable(home, events):
    drop(home, events)
    asked = []

    def stop_after_build() -> bool:
        asked.append(1)
        return len(asked) > 2

    stopped = run_pipeline(home, make_config(home), run_id="s", should_stop=stop_after_build)
    assert stopped.stopped and stopped.status == "open" and "resume with --run-id s" in stopped.summary()
    run = Run.open(home, "s")
    assert run.done("build") and run.stage("train") is None
    assert run_pipeline(home, make_config(home), run_id="s").outcome == "published"


def test_a_published_version_that_cannot_be_read_does_not_block_the_pipeline(home, events):
    drop(home, events)
    first = run_pipeline(home, make_config(home, "popular"))
    saved = ModelRegistry(home).versions_dir / first.version / "model" / "model.json"
    saved.write_text(saved.read_text().replace('"model": "popular"', '"model": "retired-model-type"'))
    result = run_pipeline(home, make_config(home))
    published = Run.load(result.path).result("evaluate")["published"]
    assert published["method"] == "none" and published["metrics"] is None
    assert "unknown model type 'retired-model-type'" in published["note"]
    assert result.outcome == "published"  # judged against popularity alone, and the run says why


def test_a_broken_version_and_a_deletion_do_not_stop_the_next_run(home, events):
    # issue 14: one invalid manifest.json made `pipeline run` fail with a JSON error naming no file
    drop(home, events)
    config = make_config(home)
    first = run_pipeline(home, config)
    (ModelRegistry(home).versions_dir / first.version / "manifest.json").write_text("{oops")
    EventStore(home).tombstones.add("u1")  # a deletion: the next run builds again, without u1
    second = run_pipeline(home, config)
    assert second.status == "succeeded" and second.version != first.version
    run = Run.load(second.path)
    assert not run.result("build")["reused"]
    assert "could not be scored" in (run.result("evaluate")["published"] or {}).get("note", "")
    train = ModelRegistry(home).open(second.version).model.users_.ids().tolist()
    assert "u1" not in train and "u2" in train
