import numpy as np
import scipy.sparse as sp

from recforge.models.popular import Popular
from tests.models.contract import RecommenderContract


class TestPopular(RecommenderContract):
    learns_structure = False

    def make(self):
        return Popular()


def test_popularity_is_decayed_mass():
    x = sp.csr_matrix(np.array([[1.0, 0, 0.5], [2.0, 0, 0], [0, 0.25, 0]]))
    model = Popular().fit(x)
    np.testing.assert_allclose(model.popularity_, [3.0, 0.25, 0.5])
    ids, scores = model.recommend(np.array([2]), k=3)
    assert ids[0].tolist() == [0, 2, -1]  # item 1 is seen by user 2


def test_candidate_path_equals_dense_scoring():
    """Popular scores only the global top k + most-excluded items; the answer must equal the
    base class's dense path over the whole catalogue (ties in popularity included)."""
    from recforge.models.base import Recommender

    x = sp.random(300, 80, density=0.1, format="csr", random_state=4, dtype=np.float32)
    x.data = np.round(x.data * 3) + 1  # many ties in popularity
    model = Popular().fit(x)
    users = np.arange(300)
    banned = np.array([3, 17, 40])
    for exclude_items in (None, banned):
        fast = model._recommend_indices(users, 12, model.seen_[users], exclude_items)
        dense = Recommender._recommend_indices(model, users, 12, model.seen_[users], exclude_items)
        np.testing.assert_array_equal(fast[0], dense[0])
        np.testing.assert_array_equal(fast[1], dense[1])
    sim_ids, _ = model.similar_items(np.arange(80), k=5)
    assert not (sim_ids == np.arange(80)[:, None]).any()
