"""``select_topk``'s partial selection equals a full stable sort, ties and exclusions included."""

import numpy as np
import pytest

from recforge.topk import select_topk


def reference(scores, k):
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    return np.where(np.isfinite(top), order, -1), np.where(np.isfinite(top), top, -np.inf)


@pytest.mark.parametrize("seed", range(6))
def test_partial_selection_matches_the_full_sort(seed):
    rng = np.random.default_rng(seed)
    n_items = int(rng.integers(50, 3000))
    scores = rng.integers(0, [3, 20, 1000][seed % 3], size=(7, n_items)).astype(np.float32)  # many ties
    scores[1, :] = 0.0
    scores[2, rng.random(n_items) < 0.97] = -np.inf  # fewer candidates than k
    for k in (1, 5, 40):
        ids, top = select_topk(scores.copy(), k)
        want_ids, want_top = reference(scores, min(k, n_items))
        assert np.array_equal(ids[:, : want_ids.shape[1]], want_ids)
        assert np.array_equal(top[:, : want_top.shape[1]], want_top)
