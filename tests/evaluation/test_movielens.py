"""The whole protocol (split + served lists + metrics) against the reference point of
``../shared/datasets/README.md``: on ml-100k, per-user random 80/20 (seed 0), test positives =
test ratings >= 4, most popular scores P@10 0.136, NDCG@10 0.179, MAP@10 0.091 over 931 users.

"Most popular" there ranks items by the number of train ratings they received (a count), with
each user's train items filtered. recforge's ``Popular`` ranks by ``sum_u r_ui``, which with
ratings as values is the rating mass, a slightly different baseline; fed a 0/1 train matrix
(same pairs, value 1) it is the count. The split is :func:`random_split` on ``u.data`` in file
order: one uniform key per row from ``default_rng(0)``, each user's ``round(0.2 * n_u)`` rows with
the smallest keys held out.
"""

from __future__ import annotations

import gzip

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import scipy.sparse as sp

from recforge.data import Interactions
from recforge.evaluation import compare, evaluate, random_split
from recforge.models import Popular
from recforge.weighting import Weighting
from tests.conftest import dataset_path

pytestmark = pytest.mark.datasets


def ml100k_events() -> pa.Table:
    """``u.data`` (user, item, rating, unix time; tab separated) as rating events, file order."""
    with gzip.open(dataset_path("ml-100k", "u.data.gz"), "rb") as f:
        raw = pacsv.read_csv(
            f,
            read_options=pacsv.ReadOptions(column_names=["user", "item", "rating", "time"]),
            parse_options=pacsv.ParseOptions(delimiter="\t"),
            convert_options=pacsv.ConvertOptions(
                column_types={
                    "user": pa.string(),
                    "item": pa.string(),
                    "rating": pa.float64(),
                    "time": pa.int64(),
                }
            ),
        )
    n = raw.num_rows
    return pa.table(
        {
            "user_id": raw["user"].cast(pa.large_string()),
            "item_id": raw["item"].cast(pa.large_string()),
            "event_type": pa.array(["rating"] * n, pa.large_string()),
            "value": raw["rating"],
            "timestamp": pa.compute.multiply(raw["time"], 1_000_000).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def counts_only(x: Interactions) -> Interactions:
    """The same pairs with value 1: ``Popular`` on it ranks by the number of train ratings."""
    ones = sp.csr_matrix((np.ones(x.nnz, np.float32), x.matrix.indices, x.matrix.indptr), shape=x.shape)
    return Interactions(ones, x.users, x.items, x.ratings, x.info)


@pytest.fixture(scope="module")
def split():
    return random_split(ml100k_events(), 0.2, random_state=0, weighting=Weighting(half_life_days=None))


def test_the_split_is_the_reference_split(split):
    summary = split.summary()
    assert summary["train_rows"] == 80_000 and summary["test_rows"] == 20_000
    assert split.train.n_users == 943 and split.users_without_test == 0
    # 26 items are rated only in the test part (28 ratings): reported, left out of test
    assert summary["test_only_items"] == 26 and summary["dropped_test"] == 28
    assert summary["test_only_users"] == 0


def test_most_popular_matches_the_reference_point(split):
    model = Popular().fit(counts_only(split.train))
    result = evaluate(model, split.train, split.test, k=10, min_rating=4)
    assert result.users == 931
    assert round(result.metrics["precision"], 3) == 0.136
    assert round(result.metrics["ndcg"], 3) == 0.179
    assert round(result.metrics["map"], 3) == 0.091
    # and to the last digit: 1268 hits in 9310 slots
    assert result.metrics["precision"] == pytest.approx(1268 / 9310, abs=1e-12)


def test_popularity_by_rating_mass_is_a_different_baseline(split):
    by_count = Popular().fit(counts_only(split.train))
    by_mass = Popular().fit(split.train)
    report = compare({"count": by_count, "mass": by_mass}, split.train, split.test, 10, min_rating=4)
    assert report.baseline == "count"
    assert round(report["mass"].metrics["precision"], 3) == 0.134  # not the reference 0.136
