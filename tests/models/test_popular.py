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
