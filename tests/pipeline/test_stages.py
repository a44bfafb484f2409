"""Each stage on its own: outputs, reuse, errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recforge.artifacts import ModelRegistry
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.pipeline import run_stage
from recforge.pipeline.stages import events_fingerprint
from recforge.pipeline.state import Run, list_runs
from tests.pipeline.conftest import GOOD, drop, make_config


def test_ingest_moves_files_skips_partial_ones_and_parks_unreadable_ones(home, events):
    drop(home, events.slice(0, 1000), "a.csv")
    drop(home, events.slice(1000, 1000), "b.jsonl")
    (home / "inbox" / "c.parquet.part").write_text("still being written")
    (home / "inbox" / ".d.csv").write_text("hidden")
    (home / "inbox" / "e.parquet").write_bytes(b"\x00\x01 not parquet")
    run, result = run_stage(home, make_config(home), "ingest")
    assert [f["source"] for f in result["files"]] == ["a.csv", "b.jsonl"]
    assert result["accepted"] == 2000 and result["duplicates"] == 0
    assert sorted(p.name for p in (home / "inbox").iterdir()) == [
        ".d.csv",
        "c.parquet.part",
        "done",
        "failed",
    ]
    assert sorted(p.name for p in (home / "inbox" / "done" / run.path.name).iterdir()) == ["a.csv", "b.jsonl"]
    assert [f["file"] for f in result["failed"]] == ["e.parquet"]
    assert (home / "inbox" / "failed" / "e.parquet.error").read_text().strip()
    assert EventStore(home).stats()["events"] == 2000

    drop(home, events.slice(1500, 1000), "again.csv")  # a file re-sent: only its new events count
    run2, result = run_stage(home, make_config(home), "ingest")
    assert run2.id != run.id  # ingest was done in the first run: a new run starts
    assert (result["accepted"], result["duplicates"]) == (500, 500)
    _, result = run_stage(home, make_config(home), "ingest")
    assert result["files"] == [] and result["accepted"] == 0


def test_one_poisoned_line_does_not_wedge_the_inbox(home, events):
    # issue 14: a JSONL line nested 5,000 deep failed the whole file, and every later run
    rows = [
        '{"user_id": "u1", "item_id": "i1", "event_type": "view", "timestamp": 1704067200}',
        '{"user_id": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"user_id": "u2", "item_id": "i1", "event_type": "view", "timestamp": 1704067200}',
    ]
    (home / "inbox").mkdir(parents=True)
    (home / "inbox" / "poison.jsonl").write_text("\n".join(rows) + "\n")
    _, result = run_stage(home, make_config(home), "ingest")
    assert (result["accepted"], result["rejected"], result["failed"]) == (2, 1, [])
    quarantined = json.loads(Path(result["files"][0]["quarantine"]).read_text())
    assert (quarantined["line"], quarantined["reason"]) == (2, "invalid JSON: nested too deeply")
    drop(home, events.slice(0, 100), "next.csv")
    _, result = run_stage(home, make_config(home), "ingest")
    assert result["accepted"] == 100


def test_build_is_keyed_by_event_content_and_settings(home, events):
    store = EventStore(home)
    store.append(events.slice(0, 8000))
    store.append(events.slice(8000, 8000))
    _, first = run_stage(home, make_config(home), "build")
    assert not first["reused"] and first["events"] == 16000
    assert (home / "pipeline" / "builds" / first["fingerprint"] / "train" / "interactions.json").exists()
    assert first["train"]["last"] < first["cut"] <= first["split"]["cut"]

    _, again = run_stage(home, make_config(home), "build")
    assert again["reused"] and again["fingerprint"] == first["fingerprint"]

    before = events_fingerprint(store)
    store.compact(target_rows=100_000)
    assert len(store.segments()) == 1 and events_fingerprint(store) == before
    _, compacted = run_stage(home, make_config(home), "build")
    assert compacted["reused"]

    _, other = run_stage(home, make_config(home, holdout_fraction=0.2), "build")
    assert not other["reused"] and other["fingerprint"] != first["fingerprint"]
    store.append(events.slice(16000, 10))
    _, grown = run_stage(home, make_config(home), "build")
    assert not grown["reused"] and grown["events"] == 16010


def test_build_without_events_is_a_clear_error(home):
    with pytest.raises(RecforgeError, match="no events"):
        run_stage(home, make_config(home), "build")
    [run] = list_runs(home)
    assert run.status == "failed" and run.stage("build")["status"] == "failed"
    assert "no events" in run.state["error"]


def test_stages_need_their_predecessors(home, events):
    EventStore(home).append(events)
    with pytest.raises(RecforgeError, match="needs build first"):
        run_stage(home, make_config(home), "train", run_id="x")
    run_stage(home, make_config(home), "build", run_id="x")
    with pytest.raises(RecforgeError, match="needs train first"):
        run_stage(home, make_config(home), "evaluate", run_id="x")


def test_train_stages_a_model_and_reuses_it(home, events):
    EventStore(home).append(events)
    config = make_config(home)
    run_stage(home, config, "build", run_id="a")
    _, trained = run_stage(home, config, "train", run_id="a")
    staged = home / "pipeline" / "models" / trained["train_key"]
    assert trained["model_dir"] == str(staged) and (staged / "model.json").exists()
    assert trained["fit_seconds"] is not None
    run_stage(home, config, "build", run_id="b")
    _, again = run_stage(home, config, "train", run_id="b")
    assert again["train_key"] == trained["train_key"] and again["fit_seconds"] is None
    run_stage(home, config, "build", run_id="c")
    _, popular = run_stage(home, config, "train", run_id="c", model="popular")
    assert popular["model"] == "popular" and popular["train_key"] != trained["train_key"]
    run_stage(home, config, "build", run_id="d")
    with pytest.raises(RecforgeError, match="unknown model 'nope'; available: .*popular"):
        run_stage(home, config, "train", run_id="d", model="nope")
    bad = make_config(home)
    bad.model.params[GOOD] = {"speed": 3}
    with pytest.raises(RecforgeError, match=r"bad parameters for model 'test-cooccurrence'"):
        run_stage(home, bad, "train", run_id="d")


def test_stage_by_stage_run_with_an_orchestrator_run_id(home, events):
    drop(home, events)
    config = make_config(home)
    run_id = "scheduled__2024-01-01T00:10:00+00:00"  # Airflow's run ids have ':' and '+'
    for stage in ("ingest", "build", "train", "evaluate", "gate", "precompute", "publish"):
        run, result = run_stage(home, config, stage, run_id=run_id)
        assert run.status == "open"
    assert run.path.name == "scheduled__2024-01-01T00-10-00-00-00" and run.id == run_id
    assert result["outcome"] == "published"
    # a retried task (same run id) is a no-op
    _, again = run_stage(home, config, "publish", run_id=run_id)
    assert again == result
    run, _ = run_stage(home, config, "prune", run_id=run_id)
    assert run.status == "succeeded" and run.state["outcome"] == "published"
    assert ModelRegistry(home).current() == result["version"]


def test_evaluation_report_and_version_manifest(home, events):
    drop(home, events)
    config = make_config(home)
    for stage in ("ingest", "build", "train", "evaluate", "gate", "precompute"):
        run, result = run_stage(home, config, stage, run_id="r")
    report = json.loads((run.path / "evaluation.json").read_text())
    assert set(report["models"]) == {"popular", "candidate"} and report["baseline"] == "popular"
    evaluated = run.result("evaluate")
    assert evaluated["metrics"]["candidate"]["ndcg"] > evaluated["metrics"]["popular"]["ndcg"]
    info = ModelRegistry(home).get(result["version"])
    manifest = info.manifest
    assert info.status == "candidate"  # publish has not run yet
    assert manifest["metrics"]["ndcg@10"] == evaluated["metrics"]["candidate"]["ndcg"]
    assert manifest["data_window"]["last"] < manifest["data_window"]["cut"]
    assert manifest["extra"]["gate"]["accepted"] and manifest["extra"]["run_id"] == "r"
    assert (manifest["k_users"], manifest["k_items"]) == (20, 10)
    # the staged model was the one stored: same lists
    artifact = ModelRegistry(home).open(result["version"])
    ids, _ = artifact.model.recommend(np.arange(5, dtype=np.int32), k=20)
    np.testing.assert_array_equal(artifact.user_ids[:5], ids)


def test_prune_keeps_versions_runs_and_needed_builds(home, events):
    config = make_config(home, keep_versions=2, keep_runs=3)
    store = EventStore(home)
    versions = []
    for step in range(4):
        store.append(events.slice(step * 5000, 5000))
        for stage in ("build", "train", "evaluate", "gate", "precompute", "publish"):
            _, result = run_stage(home, config, stage, run_id=f"r{step}")
        versions.append(result["version"])
    shutil.rmtree(home / "pipeline" / "models")  # as if every staged model were gone
    _, pruned = run_stage(home, config, "prune", run_id="r3")
    kept = [v.version for v in ModelRegistry(home).list()]
    current = ModelRegistry(home).current()
    assert current in kept and len(kept) <= 3 and set(kept) >= set(versions[-2:]) | {current}
    assert len(list_runs(home)) == 3 and Run.open(home, "r3").finished
    builds = sorted(p.name for p in (home / "pipeline" / "builds").iterdir())
    assert len(builds) <= 2 and Run.open(home, "r3").result("build")["fingerprint"] in builds
    assert sorted(pruned["versions"]) == sorted(set(versions) - set(kept))
