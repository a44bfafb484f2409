"""``recforge tune``: tunes on the stored events, resumes its study, writes a config that
``recforge build`` / ``recforge train`` accept, and refuses bad arguments in one line."""

from __future__ import annotations

import json
import tomllib

import pytest

from recforge.artifacts import ModelRegistry
from recforge.cli.main import main
from recforge.config import load_config
from recforge.data.generate import generate_events
from recforge.data.interactions import Interactions
from recforge.data.store import EventStore

pytest.importorskip("optuna")


def run(capsys, *args):
    code = main([*args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def events():
    return generate_events(users=200, items=80, events=6_000, days=30, seed=3)


@pytest.fixture
def home(tmp_path, events):
    home = tmp_path / "home"
    EventStore(home).append(events)
    return home


@pytest.fixture
def one_thread(tmp_path):
    """A config fitting ALS on one thread: on data this small, waking a pool costs more."""
    path = tmp_path / "one-thread.toml"
    path.write_text("[model.als]\nnum_threads = 1\n")
    return str(path)


def test_tune_writes_a_config_that_build_and_train_accept(tmp_path, capsys, home, one_thread):
    config = tmp_path / "tuned.toml"
    report = tmp_path / "tuning.json"
    code, out, err = run(
        capsys, "--home", str(home), "--config", one_thread, "tune", "--trials", "2", "--holdout", "20%",
        "--write-config", str(config), "--json", str(report),
    )  # fmt: skip
    assert code == 0, err
    assert "tuned als on" in out and "NDCG@10" in out and "MAP@10" in out and "temporal, cut" in out
    assert (home / "tuning" / "als.db").exists()
    saved = json.loads(report.read_text())
    assert len(saved["trials"]) == 2 and saved["split"]["method"] == "temporal"
    # trial 0 is the configuration in use: the default weights and ALS's defaults, in range
    first = saved["trials"][0]["params"]
    assert first["weight.cart"] == 8.0 and first["half_life_days"] == 30.0 and first["factors"] == 64
    assert {"map", "ndcg"} <= set(saved["trials"][0]["scores"])

    document = tomllib.loads(config.read_text())
    best = saved["best_params"]
    assert document["model"]["name"] == "als" and document["model"]["als"] == best
    assert best["num_threads"] == 1  # held fixed from the config in use
    loaded = load_config(config, environ={})
    weights = loaded.weighting.weights
    assert weights["cart"] == pytest.approx(saved["best_preprocessing"]["weight.cart"])
    assert loaded.weighting.half_life_days == pytest.approx(saved["best_preprocessing"]["half_life_days"])

    # the round trip: build with the tuned weights, train with the tuned parameters
    assert run(capsys, "--config", str(config), "build")[0] == 0
    assert Interactions.load(home / "interactions").info["weights"] == weights
    code, out, err = run(capsys, "train", "--config", str(config))
    assert code == 0, err
    version = out.rsplit("candidate version ", 1)[1].strip()
    trained = ModelRegistry(home).get(version).manifest["params"]
    assert {key: trained[key] for key in best} == best


def test_the_study_resumes_and_refuses_another_setup(capsys, home, one_thread):
    args = [
        "--home",
        str(home),
        "--config",
        one_thread,
        "tune",
        "--per-user",
        "0.2",
        "--no-weights",
        "--study",
        "s",
    ]
    assert run(capsys, *args, "--trials", "1")[0] == 0
    code, out, err = run(capsys, *args, "--trials", "1")
    assert code == 0, err
    assert "of 2 trials in study 's'" in out and "per-user 0.2, seed 0" in out
    code, _, err = run(capsys, *args, "--trials", "1", "--seed", "1")  # another validation split
    assert code == 2 and "not comparable" in err and "--restart" in err and len(err.splitlines()) == 1
    code, out, _ = run(capsys, *args, "--trials", "1", "--seed", "1", "--restart")
    assert code == 0 and "of 1 trials" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "--trials must be at least 1"),
        (["--k", "0"], "--k must be at least 1"),
        (["--metric", "rmse"], "metric must be one of"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--model", "popular", "--no-weights", "--no-half-life"], "nothing to tune for popular"),
        (["--holdout", "10%", "--per-user", "0.2"], "not both"),
        (["--per-user", "1.5"], "must lie in (0, 1)"),
        (["--holdout", "2"], "holdout fraction must lie in (0, 1)"),
        (["--timeout", "soon"], "is not a duration"),
        (["--study", "../escape"], "study name '../escape' must be"),
        (["--fix", "colour=red"], "unknown parameter 'colour' for model als; valid: factors"),
        (["--fix", "factors=-3"], "--set for model als: factors"),
    ],
)
def test_bad_arguments_are_one_line_errors(capsys, home, args, message):
    code, _, err = run(capsys, "--home", str(home), "tune", *args)
    assert code == 2
    assert err.startswith("recforge: error: ") and message in err and len(err.splitlines()) == 1


def test_fixed_parameters_are_held_out_of_the_search(tmp_path, capsys, home, one_thread):
    """Issue 20: ``tune --fix factors=8 --fix iterations=3``: every trial fits that value, the
    others are searched, and the written config keeps it."""
    config, report = tmp_path / "tuned.toml", tmp_path / "tuning.json"
    code, out, err = run(
        capsys, "--home", str(home), "--config", one_thread, "tune", "--trials", "3", "--holdout", "20%",
        "--no-weights", "--no-half-life", "--fix", "factors=8", "--fix", "iterations=3",
        "--write-config", str(config), "--json", str(report),
    )  # fmt: skip
    assert code == 0, err
    trials = json.loads(report.read_text())["trials"]
    assert len(trials) == 3
    assert all("factors" not in t["params"] and "iterations" not in t["params"] for t in trials)
    assert len({t["params"]["regularization"] for t in trials}) > 1  # the rest is searched
    written = tomllib.loads(config.read_text())["model"]["als"]
    assert written["factors"] == 8 and written["iterations"] == 3


def test_an_empty_store_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "--home", str(tmp_path / "empty"), "tune", "--trials", "1")
    assert code == 2 and "no events" in err


def test_auto_on_a_budget_reports_several_metrics_and_draws_the_study(tmp_path, capsys, home, one_thread):
    """Issue 16: every family on a time budget (no trial count), NDCG maximised and MAP and
    recall reported, the study drawn, and the winning family written as the config."""
    config, plot, report = tmp_path / "tuned.toml", tmp_path / "study.png", tmp_path / "tuning.json"
    code, out, err = run(
        capsys, "--home", str(home), "--config", one_thread, "tune", "--model", "auto", "--timeout", "12s",
        "--no-weights", "--no-half-life", "--metric", "ndcg,map,recall", "--plot", str(plot),
        "--write-config", str(config), "--json", str(report),
    )  # fmt: skip
    assert code == 0, err
    assert "tuned auto (best: " in out and "R@10" in out
    for family in ("als", "itemknn", "ease", "bpr"):
        assert f"best {family}: ndcg@10" in out
    saved = json.loads(report.read_text())
    assert saved["metrics"] == ["ndcg", "map", "recall"] and set(saved["families"]) == {
        "als",
        "itemknn",
        "ease",
        "bpr",
    }
    assert {t["model"] for t in saved["trials"]} == set(saved["families"])
    assert saved["seconds"] >= 11.0  # it used its budget (each family its share)
    assert plot.stat().st_size > 10_000
    document = tomllib.loads(config.read_text())
    assert document["model"]["name"] == saved["model"]
    assert document["model"][saved["model"]] == saved["best_params"]
    assert (home / "tuning" / "auto.db").exists()
