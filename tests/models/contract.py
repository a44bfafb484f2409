"""The contract every recommender honours, as a test mixin (implicit's
``RecommenderBaseTestMixin``). A model's test class sets ``make`` (an unfitted model) and
``learns_structure`` (whether it must find the checkerboard's known answer)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.data.vocabulary import Vocabulary
from recforge.models.base import NotFittedError, Recommender


class RecommenderContract:
    learns_structure: ClassVar[bool] = True
    #: hyperparameters that must raise ValueError naming the parameter
    bad_params: ClassVar[list[dict]] = []

    def make(self) -> Recommender:
        raise NotImplementedError

    @pytest.fixture
    def fitted(self, checkerboard) -> Recommender:
        return self.make().fit(checkerboard)

    def test_fit_returns_self_and_sets_state(self, checkerboard):
        model = self.make()
        assert model.fit(checkerboard) is model
        assert model.is_fitted

    def test_unfitted_use_raises(self):
        model = self.make()
        with pytest.raises(NotFittedError):
            model.recommend(np.array([0]), k=3)
        with pytest.raises(NotFittedError):
            model.similar_items(np.array([0]), k=3)

    def test_known_answer(self, fitted, checkerboard):
        if not self.learns_structure:
            pytest.skip("this model does not personalise")
        # after filtering, each user has exactly one unseen item of its own parity
        ids, scores = fitted.recommend(np.arange(20), k=1)
        for u in range(20):
            assert all(i % 2 == u % 2 for i in ids[u] if i >= 0), (u, ids[u])

    def test_filter_seen(self, fitted, checkerboard):
        ids, _ = fitted.recommend(np.arange(20), k=10, filter_seen=True)
        for u in range(20):
            seen = set(checkerboard[u].indices)
            assert not seen & set(ids[u][ids[u] >= 0].tolist())
        # without the filter, k = catalogue returns every item
        ids, scores = fitted.recommend(np.arange(20), k=10, filter_seen=False)
        assert (np.sort(ids, axis=1) == np.arange(10)).all()

    def test_sorted_best_first_and_padding(self, fitted):
        ids, scores = fitted.recommend(np.arange(20), k=15)
        assert ids.shape == (20, 15) and ids.dtype == np.int32 and scores.dtype == np.float32
        for row_ids, row_scores in zip(ids, scores, strict=True):
            valid_row = row_scores[row_ids >= 0]
            assert (np.diff(valid_row) <= 0).all()
            assert (row_ids[: len(valid_row)] >= 0).all()  # padding only at the end
        # k larger than the catalogue: padded with -1 / -inf
        assert (ids[:, 10:] == -1).all() and np.isneginf(scores[:, 10:]).all()
        valid = ids >= 0
        assert np.isfinite(scores[valid]).all()

    def test_batch_equals_single(self, fitted):
        ids, scores = fitted.recommend(np.arange(20), k=4)
        for u in (0, 7, 19):
            one_ids, one_scores = fitted.recommend(u, k=4)
            np.testing.assert_array_equal(one_ids, ids[u])
            np.testing.assert_allclose(one_scores, scores[u], rtol=1e-5, atol=1e-6)

    def test_exclude_items(self, fitted):
        ids, _ = fitted.recommend(np.arange(20), k=10, filter_seen=False, exclude=[0, 3])
        assert not np.isin(ids, [0, 3]).any()

    def test_external_ids(self, checkerboard):
        users = Vocabulary([f"u{n}" for n in range(20)])
        items = Vocabulary([f"i{n}" for n in range(10)])
        model = self.make().fit(Interactions.from_csr(checkerboard, users, items))
        ids, scores = model.recommend(["u3", "nobody"], k=3)
        assert ids.dtype == object
        assert all(isinstance(i, str) and i.startswith("i") for i in ids[0])
        assert list(ids[1]) == [None] * 3 and np.isneginf(scores[1]).all()
        sim, _ = model.similar_items(["i2"], k=3)
        assert "i2" not in sim[0].tolist()

    def test_similar_items_never_self(self, fitted):
        ids, scores = fitted.similar_items(np.arange(10), k=12)
        assert ids.shape == (10, 12)
        for i in range(10):
            assert i not in ids[i].tolist()
        assert (ids[:, 9:] == -1).all()

    def test_recommend_for_history(self, fitted):
        ids, scores = fitted.recommend_for_history(np.array([0, 2, 4]), k=2)  # even left: 6, 8
        assert ids.shape == (2,)
        assert not np.isin(ids, [0, 2, 4]).any()
        if self.learns_structure:
            assert all(i % 2 == 0 for i in ids if i >= 0)
        empty_ids, _ = fitted.recommend_for_history(np.array([], dtype=np.int64), k=2)
        assert empty_ids.shape == (2,)

    def test_items_ranks_only_the_given_items_as_the_full_ranking_does(self, fitted):
        """``items=`` is the unrestricted ranking filtered to the candidates (issue 15)."""
        full_ids, full_scores = fitted.recommend(np.arange(20), k=10, filter_seen=False)
        for u in range(20):
            candidates = [1, 4, 5, 8]
            ids, scores = fitted.recommend(u, k=3, filter_seen=False, items=candidates)
            order = [i for i in full_ids[u].tolist() if i in candidates][:3]
            assert ids.tolist() == order, (u, ids, full_ids[u])
            np.testing.assert_allclose(
                scores, full_scores[u][np.isin(full_ids[u], order)], rtol=1e-5, atol=1e-6
            )
        ids, _ = fitted.recommend(np.arange(20), k=4, items=[0, 1, 2, 3])  # seen ones still left out
        assert set(ids[ids >= 0].tolist()) <= {0, 1, 2, 3}
        ids, scores = fitted.recommend(np.arange(3), k=2, items=[])
        assert (ids == -1).all() and np.isneginf(scores).all()
        history, _ = fitted.recommend_for_history(np.array([0, 2]), k=3, items=[2, 6, 7])
        assert set(history[history >= 0].tolist()) <= {6, 7}
        similar, _ = fitted.similar_items(np.arange(10), k=2, items=[3, 9])
        for i in range(10):
            assert set(similar[i][similar[i] >= 0].tolist()) <= {3, 9} - {i}

    def test_fit_with_a_catalog_lists_every_catalog_item(self, checkerboard, tmp_path):
        from recforge.catalog import Catalog

        users = Vocabulary([f"u{n}" for n in range(20)])
        items = Vocabulary([f"i{n}" for n in range(10)])
        records = [{"item_id": f"i{n}", "categories": f"c{n % 2}", "price": float(n % 2)} for n in range(10)]
        records += [
            {"item_id": "new0", "categories": "c0", "price": 0.0},
            {"item_id": "new1", "categories": "c1"},
        ]
        model = self.make().fit(
            Interactions.from_csr(checkerboard, users, items), catalog=Catalog.from_records(records)
        )
        assert len(model.items_) == 12 and model.items_.ids([10, 11]).tolist() == ["new0", "new1"]
        assert model.cold_items_.tolist() == [10, 11]
        ids, _ = model.recommend(["u0"], k=12)
        assert set(ids[0][ids[0] != None].tolist()) >= {"new0", "new1"}  # noqa: E711
        model.save(tmp_path / "m")
        loaded = Recommender.load(tmp_path / "m")
        np.testing.assert_array_equal(
            loaded.recommend(np.arange(20), k=5)[0], model.recommend(np.arange(20), k=5)[0]
        )
        assert (loaded.cold_map_ is None) == (model.cold_map_ is None)

    def test_out_of_range_and_bad_k(self, fitted):
        with pytest.raises(ValueError, match="out of range"):
            fitted.recommend(np.array([99]), k=3)
        with pytest.raises(ValueError, match="k must"):
            fitted.recommend(np.array([0]), k=0)

    @pytest.mark.parametrize("mmap", [True, False])
    def test_save_load_round_trip(self, fitted, tmp_path, mmap):
        fitted.save(tmp_path / "m")
        loaded = Recommender.load(tmp_path / "m", mmap=mmap)
        assert type(loaded) is type(fitted)
        expected = fitted.get_params()
        if isinstance(expected.get("random_state"), np.random.Generator):
            expected["random_state"] = None  # a Generator's state is not part of the saved model
        assert _comparable(loaded.get_params()) == _comparable(expected)
        a = fitted.recommend(np.arange(20), k=5)
        b = loaded.recommend(np.arange(20), k=5)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6)

    def test_save_load_keeps_the_trained_values(self, checkerboard, tmp_path):
        weighted = checkerboard.copy()
        weighted.data = np.arange(1, weighted.nnz + 1, dtype=np.float32)  # r: serving folds users in from it
        model = self.make().fit(weighted)
        model.save(tmp_path / "m")
        loaded = Recommender.load(tmp_path / "m")
        np.testing.assert_array_equal(loaded.seen_.indices, weighted.indices)
        np.testing.assert_array_equal(loaded.seen_.data, weighted.data)

    def test_clone_is_unfitted_twin(self, fitted):
        twin = fitted.clone()
        assert not twin.is_fitted and twin.get_params() == fitted.get_params()

    def test_bad_hyperparameters_name_the_parameter(self, checkerboard):
        for params in self.bad_params:
            model = self.make().set_params(**params)
            (name,) = params
            with pytest.raises(ValueError, match=name):
                model.fit(checkerboard)

    def test_rejects_negative_or_nan_input(self):
        with pytest.raises(ValueError, match="negative"):
            self.make().fit(sp.csr_matrix(np.array([[1.0, -1.0]])))
        with pytest.raises(ValueError, match="NaN"):
            self.make().fit(sp.csr_matrix(np.array([[1.0, np.nan]])))

    # explanations ------------------------------------------------------------------------------
    def test_explanations_add_up_to_the_fold_in_scores(self, fitted, checkerboard):
        """Exact: the contributions of every history item add up to the score the model gives
        the item for that history (``recommend_for_history``), to float tolerance."""
        history = np.array([0, 2, 4, 2, 7], dtype=np.int32)  # a repeat, and an odd item
        values = np.array([1.0, 2.0, 1.0, 0.5, 3.0], dtype=np.float32)
        if not fitted.explains:
            with pytest.raises(NotImplementedError):
                fitted.explain_history(history, values, [1])
            return
        ids, scores = fitted.recommend_for_history(history, values, k=5)
        explanations = fitted.explain_history(history, values, ids, n=10)
        assert [e.item for e in explanations] == ids.tolist()
        for explanation, score in zip(explanations, scores, strict=True):
            assert explanation.history == 4  # distinct items
            assert len(explanation.items) == 4 and set(explanation.items) == {0, 2, 4, 7}
            assert explanation.explained == pytest.approx(explanation.score, rel=1e-9, abs=1e-12)
            assert explanation.score == pytest.approx(float(score), rel=2e-4, abs=2e-5)
            assert explanation.shares.sum() == pytest.approx(1.0 if explanation.score else 0.0, abs=1e-9)
            assert (np.diff(explanation.contributions) <= 0).all()  # best first
        top = fitted.explain_history(history, values, ids[:1], n=2)[0]
        assert len(top.items) == 2
        assert top.contributions == pytest.approx(explanations[0].contributions[:2], rel=1e-9, abs=1e-12)

    def test_explain_a_known_user_by_external_ids(self, checkerboard):
        model = self.make().fit(Interactions.from_csr(checkerboard))
        if not model.explains:
            return
        user, item = "3", "9"  # the user's one left-out odd item
        explanation = model.explain(user, item, n=3)
        assert explanation.item == item and all(isinstance(i, str) for i in explanation.items)
        row = checkerboard[3]
        history = [str(i) for i in row.indices]
        assert set(explanation.items) <= set(history)
        (again,) = model.explain_history(history, row.data, [item], n=3)
        assert again.score == pytest.approx(explanation.score) and list(again.items) == list(
            explanation.items
        )
        assert model.explain("nobody", item).score == 0.0


def _comparable(params: dict) -> dict:
    """Parameters with dtypes by name (a saved model stores ``np.float32`` as ``"float32"``)."""
    return {
        key: np.dtype(value).name if isinstance(value, type | np.dtype) or key == "dtype" else value
        for key, value in params.items()
    }
