"""One local Spark session for the whole test session (starting one costs seconds).

Master ``local[2,4]``: two cores, and a failed task is retried up to 4 times, so tests can
inject a failure into a task's first attempt (:func:`recforge.spark.session.inject_failure`).
Skips when pyspark or Java is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.data.vocabulary import Vocabulary
from tests.conftest import REPO

pytestmark = pytest.mark.spark


def java_problem() -> str | None:
    """Why Spark cannot start here, or ``None``."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'recforge[spark]')"
    java = shutil.which(
        "java",
        path=os.path.join(os.environ.get("JAVA_HOME", ""), "bin") + os.pathsep + os.environ.get("PATH", ""),
    )
    if java is None:
        return "Java is not installed (Spark needs Java 17)"
    if subprocess.run([java, "-version"], capture_output=True).returncode != 0:
        return "java -version failed"
    return None


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    problem = java_problem()
    if problem:
        pytest.skip(problem)
    from recforge.spark import spark_session

    session = spark_session(
        "local[2,4]",
        app_name="recforge-tests",
        driver_memory="2g",
        config={
            # the workers import the tests' helpers too
            "spark.executorEnv.PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
            "spark.sql.shuffle.partitions": "4",
            "spark.driver.extraJavaOptions": "-Dlog4j2.level=ERROR",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    session.sparkContext.setCheckpointDir(str(tmp_path_factory.mktemp("checkpoints")))
    yield session
    session.stop()


def random_pairs(
    seed: int, n_users: int = 150, n_items: int = 60, nnz: int = 1500, *, integer_ids: bool = False
) -> tuple[Any, Interactions]:
    """Random ``(user, item, value)`` pairs as pandas rows (string ids, or with ``integer_ids``
    int64 users and int32 items; some pairs duplicated) and the same data as local
    ``Interactions`` (sorted vocabularies of the ids as strings, duplicates summed), as local
    training sees them."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, nnz)
    items = rng.integers(0, n_items, nnz)
    values = rng.integers(1, 6, nnz).astype(np.float64)
    if integer_ids:
        frame = pd.DataFrame({"user": users, "item": items.astype(np.int32), "value": values})
    else:
        frame = pd.DataFrame(
            {"user": [f"u{u}" for u in users], "item": [f"i{i}" for i in items], "value": values}
        )
    user_ids, item_ids = frame["user"].astype(str).tolist(), frame["item"].astype(str).tolist()
    user_vocab = Vocabulary.from_values(user_ids)
    item_vocab = Vocabulary.from_values(item_ids)
    matrix = sp.csr_matrix(
        (
            values.astype(np.float32),
            (user_vocab.lookup(user_ids), item_vocab.lookup(item_ids)),
        ),
        shape=(len(user_vocab), len(item_vocab)),
    )
    return frame, Interactions.from_csr(matrix, user_vocab, item_vocab, ratings=matrix)
