"""Scoring a stored version through its served lists agrees with scoring the model itself."""

import numpy as np
import pytest

from recforge.artifacts import ModelRegistry
from recforge.config import load_config
from recforge.data.interactions import Interactions
from recforge.data.vocabulary import Vocabulary
from recforge.errors import RecforgeError
from recforge.evaluation import Evaluator
from recforge.pipeline.holdout import Holdout, split_events
from recforge.pipeline.scoring import score_artifact, served_lists
from recforge.precompute import precompute
from tests.pipeline.doubles import Cooccurrence


def store(home, model, data, k_users=20):
    lists = precompute(model, data, k_users=k_users, k_items=5, k_popular=30)
    info = ModelRegistry(home).create(model, lists)
    return ModelRegistry(home).open(info.version)


def test_served_lists_score_exactly_as_the_model(tmp_path, events):
    split = split_events(events, Holdout(fraction=0.2), load_config(environ={}))
    model = Cooccurrence().fit(split.train)
    artifact = store(tmp_path, model, split.train)
    evaluator = Evaluator(split.train, split.test, 10)
    direct = evaluator.evaluate(model, "model")
    served = score_artifact(artifact, evaluator, "served")
    assert served.users == direct.users > 0
    for name, value in direct.metrics.items():
        assert served.metrics[name] == pytest.approx(value, abs=1e-12), name
    assert served.info["users_known_to_version"] == served.users


def test_unknown_users_get_the_fallback_and_items_map_by_external_id(tmp_path, events):
    split = split_events(events, Holdout(fraction=0.2), load_config(environ={}))
    train = split.train
    keep = np.arange(0, train.n_users, 2)  # a version that knows every other user ...
    order = np.arange(train.n_items)[::-1]  # ... and numbers the items the other way round
    other = Interactions.from_csr(
        train.matrix[keep][:, order],
        users=Vocabulary(train.users.ids(keep)),
        items=Vocabulary(train.items.ids(order)),
    )
    artifact = store(tmp_path, Cooccurrence().fit(other), other)
    external = np.asarray(train.users.ids(np.arange(4)))
    lists = served_lists(artifact, external, 10)
    np.testing.assert_array_equal(lists[1], artifact.popular_ids[:10])  # user 1 is unknown
    np.testing.assert_array_equal(lists[0], artifact.user_ids[0, :10])
    mapped = served_lists(artifact, external, 10, items=train.items)
    assert (mapped >= 0).all() and not np.array_equal(mapped, lists)
    np.testing.assert_array_equal(train.items.ids(mapped), artifact.model.items_.ids(lists))

    result = score_artifact(artifact, Evaluator(train, split.test, 10))
    assert 0 < result.info["users_known_to_version"] < result.users
    with pytest.raises(RecforgeError, match="fewer than k=30"):
        served_lists(artifact, external, 30)
