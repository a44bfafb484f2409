"""``recforge train | precompute --engine spark`` over the event store's segments (issue 9)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import scipy.sparse as sp

from recforge import ALS
from recforge.artifacts import ModelRegistry
from recforge.cli.main import main
from recforge.config import load_config
from recforge.data.generate import generate_events
from recforge.data.interactions import Interactions
from recforge.data.schema import CONTENT_COLUMNS
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.spark.build import events_frame

pytestmark = pytest.mark.spark

CONFIG = """
[model]
name = "als"

[model.als]
factors = 8
iterations = 2
random_state = 3
num_user_blocks = 2
num_item_blocks = 2

[pipeline]
k_users = 5
k_items = 4
k_popular = 6
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    store = EventStore(home)
    store.append(generate_events(users=80, items=30, events=1_500, seed=5))
    store.append(generate_events(users=80, items=30, events=500, seed=6))  # two segments
    (home / "recforge.toml").write_text(CONFIG)
    return home


def test_pairs_from_the_segments_equal_the_local_build(spark, home):
    config = load_config(home / "recforge.toml")
    as_of = datetime(2024, 4, 1, tzinfo=UTC)
    pairs = events_frame(spark, home, config, as_of=as_of).toPandas()
    local = Interactions.from_events(
        EventStore(home).scan(CONTENT_COLUMNS), config.weighting.value(), as_of=as_of
    )
    matrix = sp.csr_matrix(
        (
            pairs["value"],
            (local.users.lookup(pairs["user"].tolist()), local.items.lookup(pairs["item"].tolist())),
        ),
        shape=local.shape,
    )
    assert matrix.nnz == local.nnz
    np.testing.assert_allclose(matrix.toarray(), local.matrix.toarray(), rtol=1e-6)


@pytest.mark.slow
def test_train_and_precompute_with_the_spark_engine(spark, home, capsys):
    args = ["--home", str(home), "--config", str(home / "recforge.toml")]
    assert main([*args, "train", "--engine", "spark", "--master", "local[2]"]) == 0
    assert "candidate version" in capsys.readouterr().out
    registry = ModelRegistry(home)
    trained = registry.open(registry.list()[-1].version)
    model = trained.model
    assert model.name == "als" and model.user_factors_.shape[1] == 8
    # [model.als] mixes ALS's parameters with SparkALS's: each goes where it belongs
    params = model.get_params()
    assert set(params) == set(ALS().get_params())
    assert (params["factors"], params["iterations"], params["random_state"]) == (8, 2, 3)
    extra = registry.list()[-1].manifest["extra"]
    assert extra["spark_params"] == {"num_user_blocks": 2, "num_item_blocks": 2}
    expected_ids, _ = model.recommend(np.arange(len(model.users_)), k=5)
    np.testing.assert_array_equal(trained.user_ids, expected_ids)
    np.testing.assert_array_equal(trained.item_ids, model.similar_items(np.arange(len(model.items_)), k=4)[0])
    assert len(trained.popular_ids) == 6

    assert main([*args, "precompute", "--engine", "spark", "--version", trained.version]) == 0
    again = registry.open(registry.list()[-1].version)
    assert again.version != trained.version
    np.testing.assert_array_equal(again.user_ids, trained.user_ids)
    np.testing.assert_array_equal(again.popular_ids, trained.popular_ids)


def test_missing_java_or_pyspark_is_one_clear_line(spark, home, capsys, monkeypatch):
    from pyspark.sql import SparkSession

    from recforge.spark.session import require_pyspark

    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: None))
    monkeypatch.setenv("JAVA_HOME", str(home / "no-jdk"))
    assert main(["--home", str(home), "train", "--engine", "spark"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recforge: error:") and "Java 17" in err and "\n" not in err
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(RecforgeError, match=r"pip install 'recforge\[spark\]'"):
        require_pyspark()
    assert main(["--home", str(home), "train", "--engine", "flink"]) == 2


def test_weights_decayed_away_are_the_local_builds_error(spark, tmp_path, capsys):
    """Events 20 years old with a 30-day half-life: every weight is below float32's range, so
    the Spark engine fits nothing and says what the local build says, instead of training on
    zeros."""
    import pyarrow as pa
    import pyarrow.compute as pc

    events = generate_events(users=40, items=20, events=300, seed=8)
    years = pa.scalar(timedelta(days=7_300), pa.duration("us"))
    events = events.set_column(
        events.schema.get_field_index("timestamp"), "timestamp", pc.subtract(events["timestamp"], years)
    )
    home = tmp_path / "old"
    EventStore(home).append(events)
    args = ["--home", str(home)]
    assert main([*args, "build"]) == 2
    local = capsys.readouterr().err
    assert main([*args, "train", "--engine", "spark", "--model", "itemknn"]) == 2
    remote = capsys.readouterr().err
    assert "every weight decayed to nothing" in remote
    # the same newest event and advice (the as-of time and ages are each run's own "now")
    newest = local.split("the newest event (")[1].split(")")[0]
    assert f"the newest event ({newest})" in remote
    assert local.split("build as of")[1] == remote.split("build as of")[1]
