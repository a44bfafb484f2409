"""On a real Spark standalone cluster (two workers of one core, tests/spark_cluster.py): a worker
lost mid-fit changes no bit of SparkALS's factors, and the whole pipeline runs there from the
command line (issue 19)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from recforge.spark import SparkALS
from tests.conftest import REPO
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


def test_a_worker_killed_mid_iteration_changes_no_bit(spark, cluster, tmp_path):
    """SIGKILL one worker (its executor and Python workers with it) while SparkALS iterates on
    the cluster: the job finishes on the other worker with the factors of an undisturbed fit
    (here: the same fit on local[2], partitioned alike), bit for bit."""
    expected = SparkALS(**SETTINGS).fit(pairs(spark))
    seen: list[str] = []
    killed_after = None
    with subprocess.Popen(
        [sys.executable, "-m", "tests.spark.cluster_fit", cluster.url, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as fit:
        assert fit.stdout is not None
        for line in fit.stdout:
            seen.append(line.strip())
            if line.startswith("iteration 2") and killed_after is None:
                cluster.kill_worker(1)
                killed_after = len(seen)
        assert fit.wait(timeout=600) == 0
    assert killed_after is not None and seen[killed_after:] == [f"iteration {i}" for i in range(3, 6)]
    assert cluster.alive_workers() == 1
    np.testing.assert_array_equal(np.load(tmp_path / "user_factors.npy"), expected.user_factors_)
    np.testing.assert_array_equal(np.load(tmp_path / "item_factors.npy"), expected.item_factors_)
