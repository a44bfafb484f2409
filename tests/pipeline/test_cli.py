"""The commands: train, evaluate, precompute, pipeline run/status/<stage>, demo."""

import json

import pytest

from recforge.artifacts import ModelRegistry
from recforge.cli.main import main
from recforge.data.store import EventStore
from recforge.pipeline.state import STAGES, list_runs
from tests.pipeline.conftest import GOOD, drop


def run(capsys, *args):
    code = main([*args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f'[model]\nname = "{GOOD}"\n[pipeline]\nk_users = 20\nk_items = 10\nk_popular = 50\n')
    return path


def test_train_evaluate_precompute(tmp_path, capsys, events, config_file):
    home = str(tmp_path / "home")
    EventStore(home).append(events)
    assert run(capsys, "--home", home, "build")[0] == 0
    code, out, _ = run(capsys, "--home", home, "train", "--config", str(config_file))
    assert code == 0 and f"trained {GOOD} on 398 users x 150 items" in out
    version = out.rsplit("candidate version ", 1)[1].strip()
    assert ModelRegistry(home).get(version).status == "candidate"

    # it has seen every event: no holdout of these events can score it, and it says why
    code, _, err = run(capsys, "--home", home, "evaluate", "--version", version)
    assert code == 2 and "it has seen the held-out events" in err and f"--model {GOOD}" in err

    report, chart = tmp_path / "report.json", tmp_path / "chart.png"
    flags = ["--holdout", "20%", "--k", "5", "--json", str(report), "--plot", str(chart)]
    code, out, _ = run(
        capsys, "--home", home, "--config", str(config_file), "evaluate", "--model", GOOD, *flags
    )
    assert code == 0 and "Metrics @5" in out and "NDCG@5" in out and "popular (baseline)" in out
    saved = json.loads(report.read_text())
    assert set(saved["models"]) == {"popular", GOOD} and saved["k"] == 5
    assert saved["split"]["test_fraction"] == 0.2 and saved["split"]["evaluated"] == f"models {GOOD}"
    assert saved["models"][GOOD]["metrics"]["ndcg"] > saved["models"]["popular"]["metrics"]["ndcg"]
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out, _ = run(capsys, "--home", home, "precompute", "--version", version)
    assert code == 0 and "precomputed 100 items per user, 50 per item" in out  # the default sizes
    assert len(ModelRegistry(home).list()) == 2


def test_evaluate_a_pipeline_version_on_its_own_holdout(tmp_path, capsys, events, config_file):
    home = tmp_path / "home"
    drop(home, events)
    code, out, err = run(
        capsys, "--home", str(home), "--config", str(config_file), "pipeline", "run", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["outcome"] == "published"
    assert "ingest: events.parquet: 20,000 accepted" in err and "gate: accepted" in err
    report = tmp_path / "r.json"
    code, out, _ = run(capsys, "--home", str(home), "evaluate", "--json", str(report))  # the published one
    assert code == 0
    saved = json.loads(report.read_text())
    [name] = [n for n in saved["models"] if n != "popular"]
    assert name == f"{GOOD} {result['version']}"
    # the same holdout and lists the pipeline measured: the same numbers
    assert saved["models"][name]["metrics"]["ndcg"] == pytest.approx(result["ndcg"]["candidate"])
    assert saved["models"]["popular"]["metrics"]["ndcg"] == pytest.approx(result["ndcg"]["popular"])
    code, _, err = run(capsys, "--home", str(home), "evaluate", "--version", "v1", "--model", "popular")
    assert code == 2 and "not both" in err


def test_stage_commands_status_and_help(tmp_path, capsys, events, config_file):
    home = tmp_path / "home"
    drop(home, events)
    base = ["--home", str(home), "--config", str(config_file), "pipeline"]
    for stage in STAGES:
        code, out, err = run(capsys, *base, stage, "--run-id", "orchestrated")
        assert code == 0, err
        assert out.startswith(f"run orchestrated: {stage} done")
    assert "(published: v" in out or "prune done" in out
    code, out, _ = run(capsys, *base, "gate", "--run-id", "orchestrated", "--json")
    assert code == 0 and json.loads(out)["result"]["accepted"] is True
    code, _, err = run(capsys, *base, "evaluate", "--run-id", "other")
    assert code == 2 and "needs build, train first" in err
    code, _, err = run(capsys, *base, "build", "--model", "popular")
    assert code == 2 and "--model applies to the train stage only" in err

    code, out, _ = run(capsys, *base, "status")
    assert code == 0 and "orchestrated" in out and "succeeded" in out and "published" in out
    code, out, _ = run(capsys, *base, "status", "--json")
    rows = json.loads(out)
    assert [r["run_id"] for r in rows] == [r.id for r in list_runs(home)]
    for command in (["pipeline"], ["pipeline", "run"], ["pipeline", "schedule"], ["pipeline", "train"],
                    ["train"], ["evaluate"], ["precompute"], ["demo"]):  # fmt: skip
        code, out, _ = run(capsys, *command, "--help")
        assert code == 0 and "Usage" in out


def test_schedule_rejects_a_bad_interval(tmp_path, capsys):
    code, _, err = run(capsys, "--home", str(tmp_path), "pipeline", "schedule", "--every", "soon")
    assert code == 2 and "is not a duration" in err


def test_demo_end_to_end_on_small_settings(tmp_path, capsys):
    home = tmp_path / "demo"
    args = [
        "--home",
        str(home),
        "demo",
        "--events",
        "20000",
        "--users",
        "400",
        "--items",
        "150",
        "--days",
        "30",
    ]
    code, out, err = run(capsys, *args, "--model", GOOD)
    assert code == 0, err
    assert "generated 20,000 marketplace events" in out
    for label in ("P@10", "NDCG@10", "MAP@10", "popularity", GOOD):
        assert label in out
    assert "gate: accepted, published version v" in out
    assert out.count(" -> i") == 3 and "viewed together with i" in out
    assert "generated their catalog: 151 items (1 new arrivals" in out
    shown = out.split("(available items only):")[1].strip().splitlines()  # a category list, priced
    assert all("$" in line for line in shown[:5]) and shown[5].startswith("done in")
    assert ModelRegistry(home).current() is not None
    # run again: the demo home is wiped and rebuilt, with the best available model by default
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert len(ModelRegistry(home).list()) == 1
    # not a terminal (as in CI): the fit shows a plain line per iteration, with its loss
    lines = [line for line in err.splitlines() if line.startswith("train: als: iteration")]
    assert len(lines) == 15 and lines[-1].startswith("train: als: iteration 15/15, loss ")


def test_demo_refuses_to_wipe_a_foreign_directory(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    code, _, err = run(capsys, "--home", str(tmp_path), "demo", "--events", "1000")
    assert code == 2 and "refusing to wipe" in err
    assert (tmp_path / "precious.txt").exists()


@pytest.mark.datasets
def test_demo_with_a_movielens_file(tmp_path, capsys):
    from tests.conftest import dataset_path

    data = dataset_path("ml-100k", "u.data.gz")
    code, out, err = run(capsys, "--home", str(tmp_path / "d"), "demo", "--data", str(data), "--model", GOOD)
    assert code == 0, err
    assert "ingested 100,000 events" in out and "NDCG@10" in out


def test_demo_on_ratings_tunes_and_ends_with_the_lift(tmp_path, capsys):
    """Issue 16: rating data (a MovieLens ``u.data`` file) get no decay, a per-user holdout and
    a model tuned on the train part; the demo ends with that model's lift over popularity."""
    import numpy as np

    rng = np.random.default_rng(0)
    lines = []
    for user in range(1, 301):  # users in 4 taste groups, 25 ratings each, mostly in-group
        group = user % 4
        items = rng.choice(np.arange(group * 25 + 1, group * 25 + 26), size=20, replace=False)
        items = np.concatenate([items, rng.choice(100, size=5, replace=False) + 1])
        for j, item in enumerate(np.unique(items)):
            lines.append(f"{user}\t{item}\t{rng.integers(1, 6)}\t{880000000 + 1000 * user + j}")
    data = tmp_path / "u.data"
    data.write_text("\n".join(lines) + "\n")
    home = tmp_path / "demo"
    code, out, err = run(capsys, "--home", str(home), "demo", "--data", str(data), "--tune", "3s")
    assert code == 0, err
    assert "no time decay, a per-user holdout of 20%" in out and "tuning every model family" in out
    assert "tuned in " in out and "per-user folds of the train part" in out and "(tuned)" in out
    last = out.strip().splitlines()[-1]
    assert "against popularity on the held-out events: NDCG@10 +" in last
    runs = list_runs(home)
    assert runs[-1].result("build")["holdout"] == {"holdout": "per_user", "per_user": 0.2}
    assert runs[-1].result("train")["source"].startswith("tuned by run")
