"""Ranking at request time over the served item space: precomputed lists filtered exactly, and
exact scoring when a filtered list is too short to be trusted.

**The order of an answer.** Candidates are ranked by score, ties by the lower index (as every
top-K of recforge does); then at most ``cap`` cold items (items without events) are kept among
the first ``k``, the cold items beyond it moving after every eligible warm item (they still fill
the answer when the warm ones run out, so an answer has ``k`` items whenever ``k`` are eligible).
:func:`pick` applies this to a ranked list.

**When a precomputed list is exact.** A user's list holds the top ``K`` of *all* the user's
unseen items. Filtered (availability, categories, ``exclude``), its entries keep their global
order, and every item outside it scores at most its last score (the horizon). So if the entries
left, together with the extra items that score above the horizon, give ``k`` items under
:func:`pick` without promoting a cold item past the cap, those ``k`` are exactly what scoring
every eligible item would give. Otherwise (too few left: a small category, many sold out)
:meth:`Ranker.exact` scores the candidates: for a factor model one matrix-vector product with
the rows of the candidates (``O(candidates x factors)``, microseconds for a category of a few
thousand items), for other models the model's own ``recommend(..., items=)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recforge.models.base import FactorRecommender, Recommender
from recforge.precompute import popularity
from recforge.serving.live_catalog import CatalogState

__all__ = ["Ranked", "Ranker", "cold_cap", "pick"]

_NONE = np.zeros(0, dtype=np.int32)


@dataclass(frozen=True)
class Ranked:
    """Served-space indices and scores, best first."""

    ids: np.ndarray
    scores: np.ndarray


def cold_cap(k: int, share: float) -> int:
    """Most cold items among the first ``k``: ``floor(k * share)``, at least 1 when ``share > 0``."""
    if share <= 0:
        return 0
    return max(1, int(k * share))


def pick(
    ids: np.ndarray, scores: np.ndarray, cold: np.ndarray, k: int, cap: int, *, fill: bool
) -> Ranked | None:
    """The first ``k`` of a ranked list with at most ``cap`` cold items, the others after every
    warm one (``fill``: the list holds every eligible item, so demoted cold items may fill up).
    ``None`` when the list cannot tell (``fill`` is off and fewer than ``k`` fit the cap)."""
    allowed = ~cold | (np.cumsum(cold) <= cap)
    first = np.flatnonzero(allowed)[:k]
    if len(first) < k:
        if not fill:
            return None
        first = np.concatenate([first, np.flatnonzero(~allowed)[: k - len(first)]])
    return Ranked(ids[first], scores[first])


def _ranked(
    ids: np.ndarray, scores: np.ndarray, order_by: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sort candidates by score (``order_by`` when given: e.g. float64 popularity), ties by index."""
    key = scores if order_by is None else order_by
    order = np.lexsort((ids, -key))
    return ids[order], scores[order]


def _top(
    ids: np.ndarray, scores: np.ndarray, order_by: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` (by score, ties by index) of unsorted candidates."""
    key = scores if order_by is None else order_by
    if len(ids) > 4 * k:
        # the k-th best score: everything strictly better, and every tie with it, is kept
        cut = np.partition(-key, k - 1)[k - 1]
        keep = -key <= cut
        ids, scores, key = ids[keep], scores[keep], key[keep]
    order = np.lexsort((ids, -key))[:k]
    return ids[order], scores[order]


class Ranker:
    """Exact ranking for one served version (the model, its popularity, unit item vectors)."""

    def __init__(self, model: Recommender) -> None:
        self.model = model
        self.factor = isinstance(model, FactorRecommender)
        self.popularity = popularity(model.seen_)
        self._unit: np.ndarray | None = None
        # plain ndarray views of memory-mapped arrays: indexing a np.memmap costs ~50 us more
        seen = model.seen_
        self._seen = (np.asarray(seen.indptr), np.asarray(seen.indices))
        if isinstance(model, FactorRecommender):
            self._users = np.asarray(model.user_factors_)
            self._items = np.asarray(model.item_factors_)

    def seen(self, user: int) -> np.ndarray:
        """Sorted indices of the items a known user has in the model's data."""
        indptr, indices = self._seen
        return np.asarray(indices[indptr[user] : indptr[user + 1]], dtype=np.int32)

    # vectors ----------------------------------------------------------------------------------
    def user_vector(self, user: int, history: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        """A factor model's vector of a known user (``history`` None) or of a folded-in one."""
        assert isinstance(self.model, FactorRecommender)
        if history is None:
            return self._users[user]
        return self.model.fold_in(*history)

    def item_rows(self, state: CatalogState, items: np.ndarray) -> np.ndarray:
        """Factor rows of served-space items (model items, then extras)."""
        factors = self._items
        if state.extra_factors is None or not len(items) or items.max() < state.n_model:
            return factors[items]
        inside = items < state.n_model
        rows = np.empty((len(items), factors.shape[1]), dtype=np.float32)
        rows[inside] = factors[items[inside]]
        rows[~inside] = state.extra_factors[items[~inside] - state.n_model]
        return rows

    def unit_rows(self, state: CatalogState, items: np.ndarray) -> np.ndarray:
        """Unit-length similarity vectors (cosine) of served-space items (zero stays zero)."""
        assert isinstance(self.model, FactorRecommender)
        if self._unit is None:
            vectors = np.asarray(self.model.similarity_vectors(), dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            self._unit = vectors / np.where(norms > 0, norms, 1)
        width = self._unit.shape[1]
        out = np.empty((len(items), width), dtype=np.float32)
        inside = items < state.n_model
        out[inside] = self._unit[items[inside]]
        if (~inside).any():
            assert state.extra_factors is not None
            extra = state.extra_factors[items[~inside] - state.n_model][:, :width]
            norms = np.linalg.norm(extra, axis=1, keepdims=True)
            out[~inside] = extra / np.where(norms > 0, norms, 1)
        return out

    def scores_extras(self, state: CatalogState) -> bool:
        """Whether the extra items (arrived after training) have factors to be scored with."""
        return self.factor and state.extra_factors is not None

    def scorable(self, state: CatalogState, candidates: np.ndarray) -> np.ndarray:
        """The candidates this model can score (extras only with factors)."""
        if self.scores_extras(state):
            return candidates
        return candidates[candidates < state.n_model]

    # exact ranking ------------------------------------------------------------------------------
    def exact(
        self,
        state: CatalogState,
        candidates: np.ndarray,
        k: int,
        cap: int,
        *,
        user: int = -1,
        history: tuple[np.ndarray, np.ndarray] | None = None,
        similar_to: int = -1,
    ) -> Ranked:
        """Top ``k`` under :func:`pick` among ``candidates`` (sorted, already without the excluded
        items): for a known ``user``, a folded-in ``history`` (items, values), ``similar_to`` an
        item, or (none of them) by popularity."""
        by_mass = user < 0 and history is None and similar_to < 0
        if not by_mass:  # popularity ranks every item (0 for the extra ones); scores need factors
            candidates = self.scorable(state, candidates)
        if not len(candidates):
            return Ranked(_NONE, np.zeros(0, np.float32))
        scores, order_by = self._scores(state, candidates, k, user, history, similar_to)
        cold = state.cold[candidates]
        if not cold.any():  # the common case: nothing to cap
            ids, top = _top(candidates, scores, order_by, k)
            finite = np.isfinite(top)  # a model without factors leaves the rest at -inf
            return Ranked(ids[finite], top[finite])
        out_ids, out_scores = [], []
        for group in (~cold, cold):
            if group.any():
                by = None if order_by is None else order_by[group]
                ids, top = _top(candidates[group], scores[group], by, k)
                out_ids.append(ids[np.isfinite(top)])
                out_scores.append(top[np.isfinite(top)])
        ids, top = np.concatenate(out_ids), np.concatenate(out_scores)
        ids, top = _ranked(ids, top, self.mass(ids) if by_mass else None)
        ranked = pick(ids, top, state.cold[ids], k, cap, fill=True)
        assert ranked is not None
        return ranked

    def _scores(
        self,
        state: CatalogState,
        items: np.ndarray,
        k: int,
        user: int,
        history: tuple[np.ndarray, np.ndarray] | None,
        similar_to: int,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores of ``items`` (float32) and what to order them by when it is not the scores
        (popularity: the float64 mass). For a model without factors, the items it ranks below
        its top ``k`` score ``-inf``."""
        if user < 0 and history is None and similar_to < 0:
            mass = self.mass(items)
            return mass.astype(np.float32), mass
        if self.factor:
            if similar_to >= 0:
                query = self.unit_rows(state, np.array([similar_to]))[0]
                return np.asarray(self.unit_rows(state, items) @ query, dtype=np.float32), None
            vector = self.user_vector(user, history)
            return np.asarray(self.item_rows(state, items) @ vector, dtype=np.float32), None
        scores = np.full(len(items), -np.inf, dtype=np.float32)
        cold = state.cold[items]
        for group in (~cold, cold):  # each group's own top k: the cap may need k of either
            if not group.any():
                continue
            ids, top = self._model_top(items[group], k, user, history, similar_to)
            scores[np.searchsorted(items, ids)] = top
        return scores, None

    def _model_top(
        self,
        items: np.ndarray,
        k: int,
        user: int,
        history: tuple[np.ndarray, np.ndarray] | None,
        similar_to: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A model without factors ranks ``items`` itself (its own ``items=`` path)."""
        model = self.model
        if similar_to >= 0:
            ids, scores = model.similar_items(similar_to, k, items=items)
        elif history is not None:
            ids, scores = model.recommend_for_history(*history, k=k, items=items)
        else:
            ids, scores = model.recommend(user, k, filter_seen=False, items=items)
        keep = ids >= 0
        return ids[keep].astype(np.int32), scores[keep]

    def mass(self, ids: np.ndarray) -> np.ndarray:
        """Popularity (float64 ``sum_u r_ui``, what the popular list is ordered by) of served-space
        items; 0 for the extra items."""
        mass = np.zeros(len(ids))
        inside = ids < len(self.popularity)
        mass[inside] = self.popularity[ids[inside]]
        return mass

    def _top_k(
        self,
        state: CatalogState,
        items: np.ndarray,
        k: int,
        user: int,
        history: tuple[np.ndarray, np.ndarray] | None,
        similar_to: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` of ``items`` (by score, ties by index)."""
        scores, order_by = self._scores(state, items, k, user, history, similar_to)
        ids, top = _top(items, scores, order_by, k)
        keep = np.isfinite(top)
        return ids[keep], top[keep]

    # precomputed lists ---------------------------------------------------------------------------
    def from_list(
        self,
        state: CatalogState,
        row: tuple[np.ndarray, np.ndarray],
        keep: np.ndarray,
        k: int,
        cap: int,
        *,
        extras: np.ndarray = _NONE,
        user: int = -1,
        similar_to: int = -1,
        complete: bool = True,
    ) -> Ranked | None:
        """The answer from a precomputed list (``keep``: which entries are eligible), merged
        with the eligible ``extras`` scored for ``user`` / ``similar_to``; ``None`` when it
        cannot be trusted (see the module doc). ``complete``: a padded list holds every
        candidate (true of top-K lists; not of item-kNN neighbour lists)."""
        ids, scores = row
        complete = complete and len(ids) > 0 and ids[-1] < 0  # padded: every candidate is in it
        horizon = float(scores[-1]) if len(scores) and not complete else -np.inf
        ids, scores = ids[keep], scores[keep]
        if len(extras) and (user >= 0 or similar_to >= 0):
            extra_ids, extra_scores = self._top_k(state, extras, k, user, None, similar_to)
            trusted = extra_scores > horizon
            ids, scores = _ranked(
                np.concatenate([ids, extra_ids[trusted]]), np.concatenate([scores, extra_scores[trusted]])
            )
        return pick(ids, scores, state.cold[ids], k, cap, fill=complete)
