import numpy as np
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.models.popular import Popular
from recforge.precompute import popular_list, precompute


def test_popular_list_orders_by_mass_and_skips_empty():
    x = Interactions.from_csr(sp.csr_matrix(np.array([[1.0, 0, 2, 0], [0, 0, 2, 0]])))
    ids, scores = popular_list(x, k=10)
    assert ids.tolist() == [2, 0] and scores.tolist() == [4.0, 1.0]
    assert ids.dtype == np.int32 and scores.dtype == np.float32


def test_precompute_matches_model_methods(checkerboard):
    x = Interactions.from_csr(checkerboard)
    model = Popular().fit(x)
    lists = precompute(model, x, k_users=3, k_items=2, k_popular=4)
    np.testing.assert_array_equal(lists.users[0], model.recommend(np.arange(20), k=3)[0])
    np.testing.assert_array_equal(lists.items[0], model.similar_items(np.arange(10), k=2)[0])
    assert lists.popular[0].shape == (4,)
    assert lists.item_source == "popular"
