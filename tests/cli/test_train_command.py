"""``recforge train``: progress per iteration, ``--quiet``, ``--set``, and the loss history that
``models show`` prints; version names (``latest``, ``published``, ``previous``, prefixes)."""

import json

import pytest

from recforge.artifacts import ModelRegistry
from recforge.cli.main import main
from recforge.data.generate import generate_events
from recforge.data.store import EventStore


def run(capsys, *args):
    code = main([*args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def home(tmp_path, capsys):
    home = tmp_path / "home"
    EventStore(home).append(generate_events(users=150, items=60, events=4_000, seed=3))
    assert main(["--home", str(home), "build"]) == 0
    capsys.readouterr()
    return home


def test_training_prints_a_line_per_iteration_and_records_the_loss(home, capsys):
    h = ["--home", str(home)]
    code, out, err = run(capsys, *h, "train", "--set", "iterations=3", "--set", "factors=8")
    assert code == 0 and "candidate version" in out
    lines = [line for line in err.splitlines() if line.startswith("fitting als: iteration")]
    assert [line.split(",")[0] for line in lines] == [f"fitting als: iteration {i}/3" for i in (1, 2, 3)]
    assert all("loss " in line and "elapsed" in line and "ETA" in line for line in lines)

    info = ModelRegistry(home).list()[-1]
    assert info.manifest["params"]["factors"] == 8 and info.manifest["params"]["iterations"] == 3
    history = info.manifest["extra"]["training"]["iterations"]
    assert [step["iteration"] for step in history] == [1, 2, 3]
    losses = [step["loss"] for step in history]
    assert losses[-1] < losses[0]  # ALS decreases its objective
    reported = [float(line.split("loss ")[1].split(",")[0]) for line in lines]
    assert reported == pytest.approx(losses, rel=1e-5)

    code, out, _ = run(capsys, *h, "models", "show", "latest")
    assert code == 0 and "training: 3 iterations, loss" in out


def test_quiet_shows_nothing_and_non_iterative_models_record_no_history(home, capsys):
    h = ["--home", str(home)]
    code, out, err = run(capsys, *h, "train", "--quiet", "--set", "iterations=2", "--set", "factors=4")
    assert code == 0 and "iteration" not in err
    assert len(ModelRegistry(home).list()[-1].manifest["extra"]["training"]["iterations"]) == 2
    code, out, err = run(capsys, *h, "train", "--model", "popular")
    assert code == 0 and "iteration" not in err
    assert "training" not in ModelRegistry(home).list()[-1].manifest["extra"]
    code, out, _ = run(capsys, *h, "models", "show", "latest")
    assert "training: -" in out


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("factor=8", "unknown parameter 'factor' for model als; valid: factors, regularization"),
        ("factors=-1", "--set for model als: factors must be >= 1"),
        ("solver=qr", "--set for model als: solver must be one of"),
        ("factors", "--set expects KEY=VALUE"),
    ],
)
def test_set_is_checked_before_any_work(home, capsys, assignment, message):
    code, _, err = run(capsys, "--home", str(home), "train", "--set", assignment)
    assert code == 2 and message in err
    assert ModelRegistry(home).list() == []


def test_set_reads_toml_values_and_plain_strings(home, capsys):
    h = ["--home", str(home)]
    args = ["--set", "solver=cholesky", "--set", "implicit=true", "--set", "regularization=0.5"]
    code, _, _ = run(capsys, *h, "train", "--quiet", "--set", "iterations=1", "--set", "factors=4", *args)
    assert code == 0
    params = ModelRegistry(home).list()[-1].manifest["params"]
    assert (params["solver"], params["implicit"], params["regularization"]) == ("cholesky", True, 0.5)


def test_version_names(home, capsys):
    h = ["--home", str(home)]
    for _ in range(3):
        assert run(capsys, *h, "train", "--model", "popular")[0] == 0
    first, second, third = (v.version for v in ModelRegistry(home).list())
    code, _, err = run(capsys, *h, "models", "show", "published")
    assert code == 2 and "nothing is published" in err
    assert run(capsys, *h, "models", "publish", first[:-2])[0] == 0  # a unique prefix
    assert run(capsys, *h, "models", "publish", "latest")[0] == 0
    assert ModelRegistry(home).current() == third
    code, out, _ = run(capsys, *h, "models", "show", "previous", "--json")
    assert json.loads(out)["version"] == first
    code, out, _ = run(capsys, *h, "models", "rollback", second)
    assert code == 0 and ModelRegistry(home).current() == second
    code, _, err = run(capsys, *h, "models", "show", "v")
    assert code == 2 and "matches 3 versions" in err
    code, _, err = run(capsys, *h, "models", "publish", "nope")
    assert code == 2 and "no model version 'nope'" in err


def test_train_can_record_the_metrics_of_its_configuration(home, capsys):
    h = ["--home", str(home)]
    code, out, err = run(
        capsys, *h, "train", "--evaluate", "--quiet", "--set", "iterations=2", "--set", "factors=4"
    )
    assert code == 0, err
    assert "Metrics @10" in out and "popular (baseline)" in out
    metrics = ModelRegistry(home).list()[-1].metrics
    assert set(metrics) >= {"ndcg@10", "map@10"} and 0 <= metrics["ndcg@10"] <= 1
    code, out, _ = run(capsys, *h, "models", "list")
    assert "ndcg@10=" in out


def test_commands_that_write_create_the_home_and_say_where(tmp_path, capsys):
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,event_type,timestamp\nu1,i1,view,2024-01-01T00:00:00Z\n")
    home = tmp_path / "new-home"
    code, _, err = run(capsys, "--home", str(home), "ingest", str(events))
    assert code == 0 and f"created a new home at {home.resolve()}" in err and home.is_dir()
    code, _, err = run(capsys, "--home", str(home), "ingest", str(events))
    assert code == 0 and "created" not in err
