"""The recommender contract, implemented once for every model.

``fit(X, catalog=None) -> self``; ``recommend(user_ids, k, filter_seen=True, exclude=None,
items=None) -> (ids, scores)``; ``similar_items(item_ids, k, items=None) -> (ids, scores)``;
``recommend_for_history(item_ids, values, k, items=None)`` (fold-in of a user the model has not
seen); ``explain(user, item, n)`` /
``explain_history(item_ids, values, items, n)`` (why an item scored what it did: see
:class:`Explanation`); ``save(path)`` / ``Recommender.load(path)``.

**Catalog.** ``fit(X, catalog=catalog)`` lists every catalog item in ``items_`` (items without
events are appended after the interactions' items, in sorted order) and, for factor models,
gives the items without events (``cold_items_``) a factor vector from their attributes through
the cold-start map fitted on the others (:mod:`recforge.models.cold_start`, kept as
``cold_map_`` and saved with the model). Other models list them with no evidence for them
(ItemKNN: no neighbours; Popular: popularity 0).

**Candidates.** ``items=`` (ids, as the other id arguments) restricts an answer to those items:
the top-``k`` among them, exactly as the unrestricted answer ranks them (seen and excluded items
still left out); unknown ids are ignored. This is how a category filter is answered exactly.

Ids: integer arrays are dense indices (the fast path, results are dense item indices, padding
``-1``); string arrays are external ids mapped through the vocabularies learned in ``fit``
(results are object arrays of item ids, padding ``None``). An unknown external user gets an
all-padding row; an out-of-range integer raises ``ValueError``. Scores are float32, padding
``-inf``. Rows are best first, ties broken by the lower item index.

Hyperparameters are stored verbatim by ``__init__`` and validated by ``fit`` (scikit-learn's
estimator contract), so ``get_params`` / ``clone`` work for tuning. Learned state ends in ``_``.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp

from recforge._validation import check_positive_int
from recforge.catalog.items import Catalog
from recforge.data.interactions import Interactions
from recforge.data.vocabulary import Vocabulary
from recforge.models.cold_start import ColdStartMap
from recforge.topk import recommend_all, select_topk, similar_items_all

__all__ = [
    "Explanation",
    "FactorRecommender",
    "FitProgress",
    "NotFittedError",
    "Recommender",
    "as_interactions",
]

MODEL_FORMAT_VERSION = 1
IdArray = np.ndarray | Sequence[int] | Sequence[str]


class NotFittedError(ValueError, AttributeError):
    """A model was used before ``fit`` (or ``load``)."""


@dataclass
class FitProgress:
    """What a ``fit`` callback receives after each iteration (epoch).

    ``model`` holds the current state (usable with ``recommend`` for validation scores, e.g. to
    prune a tuning trial); ``loss()`` computes the training objective on demand (it costs a
    pass over the data, so it is only paid for when called). A callback returning ``True``
    stops training early.
    """

    iteration: int
    iterations: int
    elapsed: float
    model: Recommender
    loss: Callable[[], float]


@dataclass(frozen=True)
class Explanation:
    """Why ``item`` scored ``score`` for a user known by a history of items.

    Models that can explain (``Recommender.explains``) write the score of every item as an
    exact sum over the user's history items ``j`` (duplicates summed into one entry)::

        score = sum_j contribution_j

    ``items`` are the ``n`` history items with the largest contributions (best first; ties:
    lower index), ``contributions`` theirs, ``shares`` = ``contributions / score`` (the shares of
    *all* history items sum to 1; 0 when ``score`` is 0). ``history`` is the number of distinct
    history items; ``explained`` the sum of the shown contributions. ALS contributions can be
    negative (an item the user had pulls the score down), so a share can exceed 1.
    """

    item: Any
    score: float
    items: np.ndarray
    contributions: np.ndarray
    history: int

    @property
    def shares(self) -> np.ndarray:
        if self.score == 0:
            return np.zeros_like(self.contributions)
        return self.contributions / self.score

    @property
    def explained(self) -> float:
        return float(self.contributions.sum())


def as_interactions(X: Interactions | sp.spmatrix | sp.sparray) -> Interactions:
    """Accept an :class:`Interactions` or a users x items sparse matrix of ``r`` values."""
    if isinstance(X, Interactions):
        return X
    if sp.issparse(X):
        m = sp.csr_matrix(X)
        if m.nnz and not np.isfinite(m.data).all():
            raise ValueError("the interaction matrix holds NaN or infinite values")
        if m.nnz and (m.data < 0).any():
            raise ValueError("the interaction matrix holds negative values")
        return Interactions.from_csr(m)
    raise TypeError(f"fit expects Interactions or a scipy sparse matrix, got {type(X).__name__}")


class Recommender(ABC):
    """Base class of every recommender. Subclasses set ``name`` and implement ``_fit``,
    ``_score_users`` and ``_similar``; the arrays they learn come back from ``_state``."""

    name: ClassVar[str] = ""
    #: whether ``_contributions`` is implemented (``explain`` works)
    explains: ClassVar[bool] = False

    users_: Vocabulary
    items_: Vocabulary
    seen_: sp.csr_matrix
    #: the attributes -> factors map of a factor model fitted with a catalog (else ``None``)
    cold_map_: ColdStartMap | None = None
    #: numba threads for fitting and for the model's own ``recommend`` / ``similar_items``
    #: (``0``: all cores); models that take ``num_threads`` set it in ``__init__``
    num_threads: int = 0

    # hyperparameters -----------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values() if p.name != "self"]

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments as stored, so ``type(m)(**m.get_params())`` is an unfitted twin."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        names = set(self._param_names())
        for key, value in params.items():
            if key not in names:
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}")
            setattr(self, key, value)
        return self

    def clone(self) -> Self:
        """An unfitted copy with the same hyperparameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    @abstractmethod
    def _validate_params(self) -> None:
        """Raise ``ValueError`` naming the first bad hyperparameter."""

    # fitting -------------------------------------------------------------------------------
    def fit(
        self,
        X: Interactions | sp.spmatrix,
        callback: Callable[[FitProgress], bool | None] | None = None,
        *,
        catalog: Catalog | None = None,
    ) -> Self:
        """Learn from ``X`` (``Interactions`` or users x items sparse ``r``); returns ``self``.

        Iterative models call ``callback(FitProgress)`` after every iteration. With ``catalog``,
        every catalog item is listed and cold items get factors (see the module doc).
        """
        self._validate_params()
        interactions = as_interactions(X)
        if catalog is not None:
            interactions = interactions.with_items(catalog.item_ids)
        self.users_ = interactions.users
        self.items_ = interactions.items
        seen = interactions.matrix
        # only the stored entries matter (they are excluded from recommendations): share the
        # matrix's arrays instead of holding a copy (nnz floats) for the model's lifetime
        self.seen_ = sp.csr_matrix((seen.data, seen.indices, seen.indptr), shape=seen.shape)
        self.cold_map_ = None
        self._fit(interactions, callback)
        if catalog is not None and len(catalog):
            self.fit_cold_start(catalog)
        return self

    def fit_cold_start(self, catalog: Catalog) -> None:  # noqa: B027 - optional hook
        """Give the catalog's items without events what the model can (factor models: factors)."""

    @property
    def cold_items_(self) -> np.ndarray:
        """Sorted indices of the items without events in the data the model was fitted on."""
        self._check_fitted()
        counts = np.bincount(np.asarray(self.seen_.indices), minlength=len(self.items_))
        return np.flatnonzero(counts == 0).astype(np.int32)

    @abstractmethod
    def _fit(self, interactions: Interactions, callback: Callable[[FitProgress], bool | None] | None) -> None:
        """Learn the model's state from ``interactions``."""

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "seen_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load() first")

    # scoring hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _score_users(self, users: np.ndarray) -> np.ndarray:
        """Dense float32 scores ``[len(users), n_items]`` for a block of dense user indices."""

    @abstractmethod
    def _history_scores(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Dense float32 scores ``[n_items]`` for a user known only by a short history."""

    @abstractmethod
    def _similar(
        self, items: np.ndarray, k: int, include_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` neighbours (dense indices, never the item itself) of dense item indices,
        among ``include_items`` (sorted indices) when given."""

    def _contributions(self, items: np.ndarray, values: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Float64 ``[len(targets), len(items)]``: what each history item (distinct dense
        indices ``items`` with summed ``r`` values ``values``) contributes to the score of each
        target item; row ``t`` sums to the score of ``targets[t]`` for that history. Models
        that implement it set ``explains = True``; the cost should be no more than one
        fold-in (``recommend_for_history``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot explain its scores")

    def _recommend_indices(
        self,
        users: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None,
        exclude_items: np.ndarray | None,
        include_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` for dense user indices (among ``include_items`` when given); generic path:
        dense score blocks, bounded size."""
        n_items = len(self.items_)
        block = max(1, (1 << 22) // max(n_items, 1))
        ids = np.empty((len(users), k), dtype=np.int32)
        scores = np.empty((len(users), k), dtype=np.float32)
        for start in range(0, len(users), block):
            stop = min(start + block, len(users))
            sub = None if exclude is None else exclude[start:stop]
            ids[start:stop], scores[start:stop] = select_topk(
                self._score_users(users[start:stop]),
                k,
                sub,
                exclude_items=exclude_items,
                include_items=include_items,
                num_threads=self.num_threads,
            )
        return ids, scores

    # the public contract -----------------------------------------------------------------------
    def recommend(
        self,
        user_ids: IdArray | int | str,
        k: int = 10,
        filter_seen: bool = True,
        exclude: IdArray | None = None,
        items: IdArray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for each user: ``(ids [n, k], scores [n, k])`` (see module doc);
        only among ``items`` when given."""
        self._check_fitted()
        k = check_positive_int("k", k)
        single = np.isscalar(user_ids)
        users, external = self._resolve(user_ids, self.users_, "user")
        known = users >= 0
        exclude_items = self._known_items(exclude)
        include = self._known_items(items)
        ids = np.full((len(users), k), -1, dtype=np.int32)
        scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        if known.any() and (include is None or len(include)):
            rows = users[known]
            seen = self.seen_[rows] if filter_seen else None
            extra = {} if include is None else {"include_items": include}
            ids[known], scores[known] = self._recommend_indices(rows, k, seen, exclude_items, **extra)
        return self._present(ids, scores, external, single)

    def similar_items(
        self, item_ids: IdArray | int | str, k: int = 10, items: IdArray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most similar to each given item (never the item itself); only among
        ``items`` when given."""
        self._check_fitted()
        k = check_positive_int("k", k)
        single = np.isscalar(item_ids)
        queries, external = self._resolve(item_ids, self.items_, "item")
        include = self._known_items(items)
        known = queries >= 0
        ids = np.full((len(queries), k), -1, dtype=np.int32)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        if known.any() and (include is None or len(include)):
            extra = {} if include is None else {"include_items": include}
            ids[known], scores[known] = self._similar(queries[known], k, **extra)
        return self._present(ids, scores, external, single)

    def recommend_for_history(
        self,
        item_ids: IdArray,
        values: np.ndarray | Sequence[float] | None = None,
        k: int = 10,
        exclude: IdArray | None = None,
        items: IdArray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` for a user known only by a short event history, without retraining.

        ``values`` are the history's ``r`` values (default 1.0 each); unknown items in the
        history are ignored; the history's items are never recommended back; only ``items``
        are ranked when given.
        """
        self._check_fitted()
        k = check_positive_int("k", k)
        include = self._known_items(items)
        history, external = self._resolve(item_ids, self.items_, "item")
        vals = np.ones(len(history), np.float32) if values is None else np.asarray(values, np.float32)
        if vals.shape != history.shape:
            raise ValueError(f"values has {vals.size} entries for {history.size} items")
        if not np.isfinite(vals).all():
            raise ValueError("values must be finite")
        known = history >= 0
        history, vals = history[known], vals[known]
        if include is not None and not len(include):
            ids = np.full((1, k), -1, dtype=np.int32)
            return self._present(ids, np.full((1, k), -np.inf, np.float32), external, single=True)
        scores = np.asarray(self._history_scores(history, vals), dtype=np.float32)[None, :]
        drop = history
        excluded = self._known_items(exclude)
        if excluded is not None:
            drop = np.concatenate([drop, excluded])
        # one row: threads would only add the cost of waking them (milliseconds, per request)
        ids, top = select_topk(scores, k, exclude_items=np.unique(drop), include_items=include, num_threads=1)
        return self._present(ids, top, external, single=True)

    def explain(self, user: int | str, item: int | str, n: int = 3) -> Explanation:
        """Why ``item`` scores what it does for the known ``user``: its score decomposed over
        the user's training history (see :class:`Explanation`). For factor models the score is
        that of the user folded in from that history (``recommend_for_history``), which can
        differ slightly from ``recommend``'s (the user's factors were solved against the items'
        previous factors). An unknown user has an empty history (score 0)."""
        self._check_fitted()
        users, _ = self._resolve(user, self.users_, "user")
        if users[0] < 0:
            return self.explain_history(np.zeros(0, dtype=np.int32), None, np.array([item]), n)[0]
        row = slice(self.seen_.indptr[users[0]], self.seen_.indptr[users[0] + 1])
        history = np.asarray(self.seen_.indices[row], dtype=np.int32)
        values = np.asarray(self.seen_.data[row], dtype=np.float32)
        return self.explain_history(history, values, np.array([item]), n)[0]

    def explain_history(
        self,
        item_ids: IdArray,
        values: np.ndarray | Sequence[float] | None,
        items: IdArray,
        n: int = 3,
    ) -> list[Explanation]:
        """Why each of ``items`` scores what it does for a user known by the history
        ``item_ids`` (``r`` ``values``, default 1.0 each; unknown items ignored, repeats summed),
        as ``recommend_for_history`` scores it: one :class:`Explanation` per item, with the
        ``n`` history items that contribute most, named as ``items`` are (external ids or dense
        indices). Raises ``NotImplementedError`` for a model that cannot explain."""
        self._check_fitted()
        n = check_positive_int("n", n)
        if not self.explains:
            raise NotImplementedError(f"{type(self).__name__} cannot explain its scores")
        history, _ = self._resolve(item_ids, self.items_, "item")
        vals = np.ones(len(history), np.float64) if values is None else np.asarray(values, np.float64)
        if vals.shape != history.shape:
            raise ValueError(f"values has {vals.size} entries for {history.size} items")
        if not np.isfinite(vals).all():
            raise ValueError("values must be finite")
        targets, target_external = self._resolve(items, self.items_, "item")
        known = history >= 0
        unique, where = np.unique(history[known], return_inverse=True)
        summed = np.bincount(where, weights=vals[known], minlength=len(unique))
        scored = targets >= 0
        table = np.zeros((len(targets), len(unique)), dtype=np.float64)
        if len(unique) and scored.any():
            table[scored] = self._contributions(unique.astype(np.int32), summed, targets[scored])
        explanations = []
        for t, target in enumerate(np.atleast_1d(np.asarray(items))):
            row = table[t]
            order = np.argsort(-row, kind="stable")[:n]
            top = unique[order].astype(np.int32)
            explanations.append(
                Explanation(
                    item=target.item() if isinstance(target, np.generic) else target,
                    score=float(row.sum()),
                    items=self.items_.ids(top) if target_external else top,
                    contributions=row[order],
                    history=len(unique),
                )
            )
        return explanations

    def _known_items(self, ids: IdArray | None) -> np.ndarray | None:
        """Dense indices of the known items among ``ids`` (``None`` stays ``None``)."""
        if ids is None:
            return None
        found = self._resolve(ids, self.items_, "item")[0]
        return found[found >= 0]

    # ids -----------------------------------------------------------------------------------
    @staticmethod
    def _resolve(ids: Any, vocab: Vocabulary, what: str) -> tuple[np.ndarray, bool]:
        """Dense indices (``-1`` for unknown external ids) and whether ids were external."""
        array = np.atleast_1d(np.asarray(ids))
        if array.size == 0:
            return np.zeros(0, dtype=np.int32), False
        if array.dtype.kind in "iu":
            if array.min() < 0 or array.max() >= len(vocab):
                raise ValueError(f"{what} index out of range [0, {len(vocab)})")
            return array.astype(np.int32), False
        if array.dtype.kind in "UO":
            return vocab.lookup([str(x) for x in array]), True
        raise ValueError(f"{what} ids must be integer indices or strings, got dtype {array.dtype}")

    def _present(
        self, ids: np.ndarray, scores: np.ndarray, external: bool, single: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        out_ids: np.ndarray = self.items_.ids(ids) if external else ids
        if single:
            return out_ids[0], scores[0]
        return out_ids, scores

    # persistence -----------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        """The learned arrays, saved as ``<name>.npy``."""
        return {}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:  # noqa: B027 - optional hook
        """Restore what ``_state`` returned."""

    def save(self, path: str | Path) -> Path:
        """Write the model to directory ``path``: ``model.json`` + ``.npy`` arrays, no pickle."""
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = dict(self._state())
        arrays["seen_indptr"] = self.seen_.indptr
        arrays["seen_indices"] = self.seen_.indices
        arrays["seen_data"] = np.asarray(self.seen_.data, dtype=np.float32)  # r, for fold-in
        for key, value in arrays.items():
            np.save(path / f"{key}.npy", np.ascontiguousarray(value), allow_pickle=False)
        self.users_.save(path, "users")
        self.items_.save(path, "items")
        if self.cold_map_ is not None:
            self.cold_map_.save(path)
        manifest = {
            "format_version": MODEL_FORMAT_VERSION,
            "model": self.name,
            "params": _jsonable(self.get_params()),
            "arrays": sorted(arrays),
            "n_users": len(self.users_),
            "n_items": len(self.items_),
            "saved": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        (path / "model.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> Recommender:
        """Read a model saved by :meth:`save`, arrays memory-mapped unless ``mmap=False``."""
        path = Path(path)
        try:
            manifest = json.loads((path / "model.json").read_text())
        except FileNotFoundError:
            raise ValueError(f"no saved model at {path} (model.json missing)") from None
        if manifest.get("format_version") != MODEL_FORMAT_VERSION:
            raise ValueError(f"unsupported model format {manifest.get('format_version')!r} at {path}")
        from recforge.models.registry import MODELS  # the table imports every model, this one too

        entry = MODELS.get(manifest["model"])
        if entry is None:
            raise ValueError(f"unknown model type {manifest['model']!r} at {path}")
        model_cls = entry.cls
        if cls is not Recommender and not issubclass(model_cls, cls):
            raise ValueError(f"{path} holds a {model_cls.__name__}, not a {cls.__name__}")
        model = model_cls(**manifest["params"])
        mode: Literal["r"] | None = "r" if mmap else None
        arrays = {
            key: np.load(path / f"{key}.npy", mmap_mode=mode, allow_pickle=False)
            for key in manifest["arrays"]
        }
        model.users_ = Vocabulary.load(path, "users", mmap=mmap)
        model.items_ = Vocabulary.load(path, "items", mmap=mmap)
        n_users, n_items = manifest["n_users"], manifest["n_items"]
        indptr, indices = arrays.pop("seen_indptr"), arrays.pop("seen_indices")
        data = arrays.pop("seen_data", None)  # absent in models saved before it was kept
        if data is None:
            data = np.ones(len(indices), dtype=np.float32)
        model.seen_ = sp.csr_matrix((data, indices, indptr), shape=(n_users, n_items))
        model._set_state(arrays)
        model.cold_map_ = ColdStartMap.load(path)
        return model


class FactorRecommender(Recommender):
    """A model that scores by ``user_factors_ @ item_factors_.T`` (ALS, BPR).

    Recommendation and similar items use the blocked top-K of :mod:`recforge.topk`.
    Subclasses implement ``_fit`` and ``_fold_in`` (a user vector from a short history).
    """

    user_factors_: np.ndarray
    item_factors_: np.ndarray

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors_[users] @ self.item_factors_.T, dtype=np.float32)

    def _recommend_indices(
        self,
        users: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None,
        exclude_items: np.ndarray | None,
        include_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return recommend_all(
            self.user_factors_[users],
            self.item_factors_,
            k,
            exclude,
            exclude_items=exclude_items,
            include_items=include_items,
            num_threads=self.num_threads,
        )

    def _similar(
        self, items: np.ndarray, k: int, include_items: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return similar_items_all(
            self.similarity_vectors(),
            k,
            items=items,
            include_items=include_items,
            num_threads=self.num_threads,
        )

    def similarity_vectors(self) -> np.ndarray:
        """The item vectors whose cosine is ``similar_items``' score (the factors by default)."""
        return self.item_factors_

    def fit_cold_start(self, catalog: Catalog) -> None:
        """Factors for the catalog's items without events, from the map fitted on the others."""
        rows = self.items_.lookup(list(catalog.item_ids))
        counts = np.bincount(np.asarray(self.seen_.indices), minlength=len(self.items_))
        warm = counts[rows] > 0
        if warm.sum() < 2 or warm.all():
            return
        factors = np.array(self.item_factors_)  # writable (a loaded model's may be mapped)
        cold_map = ColdStartMap.fit(catalog.take(np.flatnonzero(warm)), factors[rows[warm]])
        factors[rows[~warm]] = cold_map.transform(catalog.take(np.flatnonzero(~warm)))
        self.item_factors_ = factors
        self.cold_map_ = cold_map

    def fold_in(self, item_ids: IdArray, values: np.ndarray | Sequence[float] | None = None) -> np.ndarray:
        """The user vector the model would learn from this history (unknown items ignored):
        the row that ``recommend_for_history`` scores the items with."""
        self._check_fitted()
        items = self._resolve(item_ids, self.items_, "item")[0]
        vals = np.ones(len(items), np.float32) if values is None else np.asarray(values, np.float32)
        if vals.shape != items.shape:
            raise ValueError(f"values has {vals.size} entries for {items.size} items")
        known = items >= 0
        return self._fold_in(items[known], vals[known])

    @abstractmethod
    def _fold_in(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The user vector (``[factors]``) that the model would learn from this history."""

    def _history_scores(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.asarray(self.item_factors_ @ self._fold_in(items, values), dtype=np.float32)

    def predict(self, user_ids: IdArray, item_ids: IdArray) -> np.ndarray:
        """The score ``x_u . y_i`` of each ``(user_ids[j], item_ids[j])`` pair (float32; ``nan``
        where either is unknown): for explicit ALS the predicted rating, as Spark's ``transform``
        gives."""
        self._check_fitted()
        users, _ = self._resolve(user_ids, self.users_, "user")
        items, _ = self._resolve(item_ids, self.items_, "item")
        if users.shape != items.shape:
            raise ValueError(f"{users.size} users for {items.size} items: give one item per user")
        out = np.full(users.shape, np.nan, dtype=np.float32)
        known = (users >= 0) & (items >= 0)
        U = np.asarray(self.user_factors_[users[known]], dtype=np.float32)
        V = np.asarray(self.item_factors_[items[known]], dtype=np.float32)
        out[known] = np.einsum("ij,ij->i", U, V)
        return out

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, np.random.Generator):
            value = None  # a Generator's state is not part of the saved model
        elif isinstance(value, type | np.dtype):
            value = np.dtype(value).name
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out
