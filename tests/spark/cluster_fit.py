"""Fit SparkALS on a Spark master and save the factors: ``python -m tests.spark.cluster_fit
MASTER OUT``. Run by ``test_cluster.py`` in a process of its own (one Spark driver per
process), which reads the ``iteration N`` lines to know when to kill a worker."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from recforge.spark import SparkALS, spark_session

#: the settings of the fit (test_cluster.py fits the same locally)
SETTINGS = {
    "factors": 8,
    "iterations": 4,
    "random_state": 0,
    "num_user_blocks": 3,
    "num_item_blocks": 2,
    "checkpoint_interval": 2,
}


def pairs(spark):
    """10,000 synthetic (user, item, value) rows in 4 partitions, the same every time."""
    rng = np.random.default_rng(19)
    n = 10_000
    table = pa.table(
        {
            "user": pa.array(np.char.add("u", rng.integers(0, 2_000, n).astype(str))),
            "item": pa.array(np.char.add("i", (np.minimum(rng.zipf(1.3, n), 500) - 1).astype(str))),
            "value": rng.integers(1, 4, n).astype(np.float64),
        }
    )
    return spark.createDataFrame(table).repartition(4)


def fit(spark, out: Path) -> None:
    model = SparkALS(**SETTINGS).fit(
        pairs(spark), callback=lambda p: print(f"iteration {p.iteration}", flush=True)
    )
    np.save(out / "user_factors.npy", model.user_factors_)
    np.save(out / "item_factors.npy", model.item_factors_)


if __name__ == "__main__":
    master, out = sys.argv[1], Path(sys.argv[2])
    session = spark_session(
        master,
        driver_memory="1g",
        executor_memory="1g",
        checkpoint_dir=out / "checkpoints",
        config={
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            # a lost executor's shuffle files are found missing at once, not after 3 x 5 s
            "spark.shuffle.io.maxRetries": "1",
            "spark.shuffle.io.retryWait": "1s",
        },
    )
    try:
        fit(session, out)
    finally:
        session.stop()
