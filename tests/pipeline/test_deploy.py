"""The orchestrator definitions in deploy/.

Kubeflow: the pipeline compiles to YAML (kfp compiles without a cluster) whose steps run the
stages in order. Airflow is not installed (it is heavy): the DAG file is loaded against small
stand-ins for ``airflow.DAG`` and ``BashOperator`` that record what it declares; its structure
and commands are checked, not Airflow's scheduling. For both, the commands the steps would
execute are run through the shell with a stand-in ``recforge`` that records its arguments,
and the recorded commands are then replayed through the real command line: they must take new
events to a published model.
"""

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from datetime import timedelta
from types import ModuleType

import pytest

from recforge.artifacts import ModelRegistry
from recforge.cli.main import main
from recforge.pipeline.state import STAGES, Run
from tests.conftest import REPO
from tests.pipeline.conftest import GOOD, drop

AIRFLOW_RUN_ID = "scheduled__2024-01-01T00:10:00+00:00"


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    """A ``recforge`` on PATH that appends its arguments (one JSON list per call) to a file."""
    bin_dir, record = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    fake = bin_dir / "recforge"
    fake.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c "
        '\'import json, os, sys; open(os.environ["RECORD"], "a").write(json.dumps(sys.argv[1:]) + "\\n")\' '
        '"$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RECORD", str(record))
    return fake, record


def replay(record, capsys):
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    for argv in calls:
        assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    return calls


def config_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f'[model]\nname = "{GOOD}"\n[pipeline]\nk_users = 20\nk_items = 10\nk_popular = 50\n')
    return path


# Kubeflow --------------------------------------------------------------------------------------
def test_kubeflow_pipeline_compiles_to_yaml_with_the_stages_in_order(tmp_path):
    pytest.importorskip("kfp", reason="kfp (the dev extra) is not installed")
    yaml = pytest.importorskip("yaml")
    kubeflow = load(REPO / "deploy" / "kubeflow" / "pipeline.py", "recforge_kubeflow")
    assert kubeflow.STAGES == STAGES
    out = kubeflow.compile_pipeline(tmp_path / "recforge.yaml", image="registry.example.com/recforge:1")
    spec = yaml.safe_load(out.read_text())
    assert spec["pipelineInfo"]["name"] == "recforge-retrain"
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"home", "config"}
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {f"recforge-{s}" for s in STAGES}
    assert "dependentTasks" not in tasks["recforge-ingest"]
    for before, stage in itertools.pairwise(STAGES):
        task = tasks[f"recforge-{stage}"]
        assert task["dependentTasks"] == [f"recforge-{before}"]
        assert task["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    for stage in STAGES:
        container = spec["deploymentSpec"]["executors"][f"exec-recforge-{stage}"]["container"]
        assert container["image"] == "registry.example.com/recforge:1"
        assert f"pipeline {stage} --run-id" in container["command"][2]


def test_kubeflow_steps_run_the_pipeline(tmp_path, recorder, capsys, events):
    pytest.importorskip("kfp", reason="kfp (the dev extra) is not installed")
    yaml = pytest.importorskip("yaml")
    kubeflow = load(REPO / "deploy" / "kubeflow" / "pipeline.py", "recforge_kubeflow")
    spec = yaml.safe_load(kubeflow.compile_pipeline(tmp_path / "p.yaml").read_text())
    home, config = tmp_path / "home", config_file(tmp_path)
    drop(home, events)
    values = {"home": str(home), "config": str(config), "run_id": "job-7f3a"}
    for stage in STAGES:  # the DAG order, as Kubeflow would schedule it
        container = spec["deploymentSpec"]["executors"][f"exec-recforge-{stage}"]["container"]
        args = [a.replace("{{$.inputs.parameters['", "").replace("']}}", "") for a in container["args"]]
        subprocess.run([*container["command"], *(values[a] for a in args)], check=True)
    calls = replay(recorder[1], capsys)
    assert calls[0] == [
        "--home",
        str(home),
        "--config",
        str(config),
        "pipeline",
        "ingest",
        "--run-id",
        "job-7f3a",
    ]
    run = Run.open(home, "job-7f3a")
    assert run.status == "succeeded" and run.state["outcome"] == "published"
    assert ModelRegistry(home).current() == run.result("publish")["version"]
    # an empty config passes no --config at all
    recorder[1].unlink()
    container = spec["deploymentSpec"]["executors"]["exec-recforge-prune"]["container"]
    subprocess.run([*container["command"], str(home), "", "job-2"], check=True)
    assert replay(recorder[1], capsys) == [["--home", str(home), "pipeline", "prune", "--run-id", "job-2"]]


# Airflow ---------------------------------------------------------------------------------------
class FakeDAG:
    current = None

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.tasks = []

    def __enter__(self):
        FakeDAG.current = self
        return self

    def __exit__(self, *exc):
        FakeDAG.current = None


class FakeBashOperator:
    def __init__(self, task_id, bash_command, **kwargs):
        self.task_id = task_id
        self.bash_command = bash_command
        self.downstream = []
        FakeDAG.current.tasks.append(self)

    def __rshift__(self, other):
        self.downstream.append(other)
        return other


@pytest.fixture
def airflow(monkeypatch):
    """Stand-ins for the Airflow 2 modules the DAG imports (the Airflow 3 path is absent)."""
    modules = {name: ModuleType(name) for name in ("airflow", "airflow.operators", "airflow.operators.bash")}
    modules["airflow"].DAG = FakeDAG
    modules["airflow.operators.bash"].BashOperator = FakeBashOperator
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


def load_dag(monkeypatch, home, config, recforge):
    monkeypatch.setenv("RECFORGE_HOME", str(home))
    monkeypatch.setenv("RECFORGE_CONFIG_FILE", str(config))
    monkeypatch.setenv("RECFORGE_BIN", str(recforge))
    return load(REPO / "deploy" / "airflow" / "recforge_dag.py", "recforge_dag")


def test_airflow_dag_runs_the_stages_in_order_every_10_minutes(tmp_path, airflow, monkeypatch):
    module = load_dag(monkeypatch, tmp_path / "home", tmp_path / "c.toml", "recforge")
    dag = module.dag
    assert module.STAGES == STAGES
    assert dag.kwargs["dag_id"] == "recforge_pipeline"
    assert dag.kwargs["schedule"] == timedelta(minutes=10)
    assert dag.kwargs["max_active_runs"] == 1 and dag.kwargs["catchup"] is False
    assert [t.task_id for t in dag.tasks] == list(STAGES)
    for task, following in zip(dag.tasks, [*dag.tasks[1:], None], strict=True):
        assert task.downstream == ([following] if following else [])
        assert task.bash_command.endswith(f"pipeline {task.task_id} --run-id '{{{{ run_id }}}}'")
        assert f"--home {tmp_path / 'home'} --config {tmp_path / 'c.toml'} " in task.bash_command


def test_airflow_tasks_run_the_pipeline(tmp_path, airflow, monkeypatch, recorder, capsys, events):
    home, config = tmp_path / "home", config_file(tmp_path)
    drop(home, events)
    dag = load_dag(monkeypatch, home, config, recorder[0]).dag
    for task in dag.tasks:  # Airflow renders {{ run_id }} and runs the command with bash
        command = task.bash_command.replace("{{ run_id }}", AIRFLOW_RUN_ID)
        subprocess.run(["bash", "-c", command], check=True)
    calls = replay(recorder[1], capsys)
    assert [c[-3] for c in calls] == list(STAGES) and {c[-1] for c in calls} == {AIRFLOW_RUN_ID}
    run = Run.open(home, AIRFLOW_RUN_ID)
    assert run.status == "succeeded" and run.state["outcome"] == "published"
    assert run.id == AIRFLOW_RUN_ID and run.path.name == "scheduled__2024-01-01T00-10-00-00-00"
