"""On a real Spark standalone cluster (two workers of one core, tests/spark_cluster.py): a worker
lost mid-fit changes no bit of SparkALS's factors, and the whole pipeline runs there from the
command line (issue 19)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from recforge.artifacts import ModelRegistry
from recforge.cli.main import main
from recforge.data.generate import generate_events
from recforge.pipeline.state import STAGES, Run
from recforge.spark import SparkALS
from tests.conftest import REPO
from tests.pipeline.conftest import drop
from tests.spark.cluster_fit import SETTINGS, pairs
from tests.spark.conftest import java_problem
from tests.spark_cluster import ClusterUnavailable, standalone_cluster

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    problem = java_problem()
    if problem:
        pytest.skip(problem)
    try:
        with standalone_cluster(
            tmp_path_factory.mktemp("cluster"), workers=2, cores=1, memory="1500m"
        ) as running:
            yield running
    except ClusterUnavailable as error:
        pytest.fail(str(error))


PIPELINE_CONFIG = """
[model]
name = "itemknn"

[model.itemknn]
neighbors = 10

[engine]
executor_memory = "1g"

[pipeline]
k_users = 10
k_items = 5
k_popular = 10
"""


def homes(tmp_path):
    """Two homes with the same events in their inboxes and the same configuration."""
    events = generate_events(users=300, items=120, events=8_000, days=30, seed=19)
    made = []
    for name in ("local", "cluster"):
        home = tmp_path / name
        drop(home, events)
        (home / "recforge.toml").write_text(PIPELINE_CONFIG)
        made.append(home)
    return made


def run_on_cluster(cluster, home):
    """``recforge pipeline run --engine spark --master spark://...`` in a process of its own:
    its JSON outcome and its stderr (the progress lines)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECFORGE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    config = ["--home", str(home), "--config", str(home / "recforge.toml")]
    spark = ["--engine", "spark", "--master", cluster.url, "--driver-memory", "1g"]
    done = subprocess.run(
        [sys.executable, "-m", "recforge", *config, "pipeline", "run", "--json", *spark],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), done.stderr


def run_locally(capsys, home):
    args = ["--home", str(home), "--config", str(home / "recforge.toml"), "pipeline", "run"]
    assert main([*args, "--engine", "local", "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def stages_of(home, outcome):
    """The run record's stages, each checked done and timed."""
    record = Run.load(home / "runs" / outcome["run_id"])
    assert record.status == "succeeded"
    stages = record.state["stages"]
    assert set(stages) == set(STAGES)
    for name in STAGES:
        assert stages[name]["status"] == "done" and stages[name]["seconds"] >= 0, name
    return stages


def test_the_pipeline_from_the_command_line_on_the_cluster_publishes_the_local_lists(
    cluster, tmp_path, capsys
):
    """``pipeline run --engine spark --master spark://...``: every stage on the cluster, timed in
    the run record, shown as it goes, and the same split, scores and published ItemKNN lists as
    the local engine on the same events, exactly."""
    local_home, cluster_home = homes(tmp_path)
    cluster.wait_until_alive()
    want = run_locally(capsys, local_home)
    got, progress = run_on_cluster(cluster, cluster_home)
    assert cluster.alive_workers() == 2
    for line in (
        "spark: session ready",
        "spark build:",
        "SparkItemKNN: 10 neighbours per item",
        "spark: lists of",
    ):
        assert line in progress
    assert got["outcome"] == want["outcome"] == "published" and got["ndcg"] == want["ndcg"]
    built, local_built = (
        stages_of(cluster_home, got)["build"]["result"],
        stages_of(local_home, want)["build"]["result"],
    )
    assert built["read_at"] >= local_built["read_at"]
    for result in (built, local_built):
        del result["split"]["read_at"], result["read_at"], result["path"]
    assert built == local_built  # the same split, train and test parts, and fingerprint
    expected = ModelRegistry(local_home).open(want["version"])
    published = ModelRegistry(cluster_home).open(got["version"])
    assert published.model.users_ == expected.model.users_
    assert published.model.items_ == expected.model.items_
    for name in ("user_ids", "user_scores", "item_ids", "item_scores", "popular_ids", "popular_scores"):
        np.testing.assert_array_equal(getattr(published, name), getattr(expected, name), err_msg=name)


def test_a_worker_killed_mid_iteration_changes_no_bit(spark, cluster, tmp_path):
    """SIGKILL one worker (its executor and Python workers with it) while SparkALS iterates on
    the cluster: the job finishes on the other worker with the factors of an undisturbed fit
    (here: the same fit on local[2], partitioned alike, run while the cluster's driver starts),
    bit for bit."""
    seen: list[str] = []
    killed_after: list[int] = []
    with subprocess.Popen(
        [sys.executable, "-m", "tests.spark.cluster_fit", cluster.url, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as fit:

        def watch() -> None:
            assert fit.stdout is not None
            for line in fit.stdout:
                seen.append(line.strip())
                if line.startswith("iteration 2") and not killed_after:
                    cluster.kill_worker(1)
                    killed_after.append(len(seen))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        expected = SparkALS(**SETTINGS).fit(pairs(spark))
        assert fit.wait(timeout=600) == 0
        watcher.join(timeout=30)
    try:
        last = SETTINGS["iterations"]
        assert killed_after and seen[killed_after[0] :] == [f"iteration {i}" for i in range(3, last + 1)]
        assert cluster.alive_workers() == 1
    finally:  # the machine comes back (a test that needs both workers waits for it)
        cluster.start_worker(1)
    np.testing.assert_array_equal(np.load(tmp_path / "user_factors.npy"), expected.user_factors_)
    np.testing.assert_array_equal(np.load(tmp_path / "item_factors.npy"), expected.item_factors_)
