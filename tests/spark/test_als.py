"""SparkALS against local ALS on the same data and initial factors (issue 9), with exactly
ALS's hyperparameters (issue 13)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from recforge import ALS
from recforge.spark import SparkALS
from recforge.spark.session import FAIL_ONCE
from tests.spark.conftest import random_pairs

#: float64: the same maths to 1e-10 (in float32, 3-step CG turns rounding differences, from
#: Grams summed per block and the basis the factors are kept in, into about 1e-2)
COMMON = {
    "factors": 8,
    "iterations": 2,
    "random_state": 7,
    "regularization": 0.1,
    "alpha": 2.0,
    "dtype": np.float64,
}


def scores(model: ALS) -> np.ndarray:
    return model.user_factors_ @ model.item_factors_.T


def failed_tasks(sc, group: str) -> int:
    tracker = sc.statusTracker()
    total = 0
    for job in tracker.getJobIdsForGroup(group):
        info = tracker.getJobInfo(job)
        for stage in info.stageIds if info else ():
            stage_info = tracker.getStageInfo(stage)
            total += stage_info.numFailedTasks if stage_info else 0
    return total


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize(
    ("params", "integer_ids"),
    [
        ({"solver": "cg"}, False),
        ({"solver": "cg"}, True),  # ids looked up by value, vocabularies of their strings
        ({"solver": "cholesky", "implicit": False, "regularization_scaling": "count"}, False),
        # Rendle et al.'s regularisation (issue 16): a0 G, frequency-scaled lambda, normal start
        (
            {
                "solver": "cholesky",
                "regularization_scaling": "frequency",
                "regularization_exponent": 0.7,
                "unobserved_weight": 0.1,
            },
            False,
        ),
    ],
    ids=["cg-implicit", "cg-implicit-integer-ids", "cholesky-explicit", "cholesky-frequency"],
)
def test_same_model_as_local_training(spark, params, integer_ids):
    frame, interactions = random_pairs(1, integer_ids=integer_ids)
    local = ALS(**COMMON, **params).fit(interactions)
    fitted = SparkALS(**COMMON, **params, num_user_blocks=3, num_item_blocks=2).fit(
        spark.createDataFrame(frame)
    )
    assert isinstance(fitted, ALS)
    assert fitted.users_ == interactions.users and fitted.items_ == interactions.items
    assert (fitted.seen_ != interactions.matrix).nnz == 0
    assert fitted.get_params() == local.get_params()
    expected = scores(local)
    np.testing.assert_allclose(scores(fitted), expected, atol=1e-8 * np.abs(expected).max())


@pytest.mark.spark
@pytest.mark.parametrize(
    "params",
    [{"solver": "cg"}, {"solver": "cholesky", "implicit": False, "regularization_scaling": "count"}],
    ids=["cg-implicit", "cholesky-explicit"],
)
def test_each_iteration_reports_the_loss_local_training_has(spark, params):
    """Issue 19: the per-iteration objective comes from the solve tasks' parts, with no extra
    job, and equals local training's after the same iteration; a callback can stop the fit."""
    frame, interactions = random_pairs(5)
    settings = {**COMMON, **params, "iterations": 3}
    local: list[float] = []
    ALS(**settings).fit(interactions, callback=lambda p: local.append(p.loss()))
    seen: list[tuple[int, int, float]] = []
    data = spark.createDataFrame(frame)
    SparkALS(**settings, num_user_blocks=2, num_item_blocks=3).fit(
        data, callback=lambda p: seen.append((p.iteration, p.iterations, p.loss())) and None
    )
    assert [(i, n) for i, n, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    np.testing.assert_allclose([loss for *_, loss in seen], local, rtol=1e-8)
    stopped: list[int] = []
    fitted = SparkALS(**settings, num_user_blocks=2, num_item_blocks=3).fit(
        data, callback=lambda p: stopped.append(p.iteration) or True
    )
    assert stopped == [1] and fitted.user_factors_.shape == (interactions.n_users, 8)


@pytest.mark.spark
@pytest.mark.slow
def test_deterministic_and_a_retried_task_gives_the_same_bits(spark, tmp_path):
    """Nonnegative (NNLS) fits with checkpoints: equal to local training, and a second fit in
    which a solve task fails once and is retried gives the same bits."""
    frame, interactions = random_pairs(2)
    data = spark.createDataFrame(frame)
    params = {**COMMON, "solver": "cholesky", "nonnegative": True}
    spark_params = {**params, "num_user_blocks": 2, "num_item_blocks": 3, "checkpoint_interval": 1}
    first = SparkALS(**spark_params).fit(data)
    expected = scores(ALS(**params).fit(interactions))
    np.testing.assert_allclose(scores(first), expected, atol=1e-8 * np.abs(expected).max())
    assert (first.user_factors_ >= 0).all() and (first.item_factors_ >= 0).all()
    sc = spark.sparkContext
    sc.setJobGroup("retried", "SparkALS with a failing solve task")
    sc.setLocalProperty(FAIL_ONCE, f"solve:{tmp_path / 'failed'}")
    try:
        second = SparkALS(**spark_params).fit(data)
    finally:
        sc.setLocalProperty(FAIL_ONCE, None)
        sc.setLocalProperty("spark.jobGroup.id", None)
    assert (tmp_path / "failed").exists() and failed_tasks(sc, "retried") == 1
    np.testing.assert_array_equal(first.user_factors_, second.user_factors_)
    np.testing.assert_array_equal(first.item_factors_, second.item_factors_)
    # and the model is the artifact local training makes
    loaded = ALS.load(second.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.recommend(["u1"], k=5)[0], second.recommend(["u1"], k=5)[0])


@pytest.mark.spark
@pytest.mark.slow
def test_bad_input_is_refused_clearly(spark):
    frame, _ = random_pairs(3, nnz=50)
    data = spark.createDataFrame(frame)
    with pytest.raises(ValueError, match="no column 'rating'"):
        SparkALS(factors=4).fit(data, value_col="rating")
    with pytest.raises(ValueError, match="num_user_blocks"):
        SparkALS(num_user_blocks=0).fit(data)


def test_hyperparameters_are_exactly_those_of_als():
    """Every ALS default is written once, in ALS (issue 13): SparkALS takes an ALS or its
    parameters, and adds only the Spark settings."""
    assert SparkALS().als.get_params() == ALS().get_params()
    assert SparkALS().als_params() == ALS().get_params()
    own = set(inspect.signature(SparkALS).parameters)
    assert own == {"als", "num_user_blocks", "num_item_blocks", "checkpoint_interval", "als_params"}
    given = ALS(factors=8, solver="cholesky", random_state=3)
    from_model = SparkALS(given, num_user_blocks=3)
    from_params = SparkALS(factors=8, solver="cholesky", random_state=3, num_user_blocks=3)
    assert from_model.als_params() == from_params.als_params() == given.get_params()
    assert (from_model.num_user_blocks, from_model.num_item_blocks) == (3, 10)
    given.set_params(factors=16)  # a copy was taken
    assert from_model.als.factors == 8 and from_model.als is not from_model.als
    assert repr(from_params).startswith("SparkALS(ALS(factors=8, ")


def test_bad_parameters_are_refused_before_spark_is_touched():
    with pytest.raises(TypeError, match="not both"):
        SparkALS(ALS(), factors=4)
    with pytest.raises(TypeError, match="recforge.ALS"):
        SparkALS(64)
    with pytest.raises(TypeError, match="factor"):
        SparkALS(factor=4)
    for params, name in (({"factors": 0}, "factors"), ({"num_item_blocks": 0}, "num_item_blocks")):
        with pytest.raises(ValueError, match=name):
            SparkALS(**params).fit(None)  # validated first: no DataFrame needed
    with pytest.raises(ValueError, match="checkpoint_interval"):
        SparkALS(checkpoint_interval=0).fit(None)
