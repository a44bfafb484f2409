"""The evaluation protocol: score models on a holdout through the path that serves their lists.

For each evaluated user the list comes from the model's own ``recommend(users, k,
filter_seen=True)``, the call that produces the served (precomputed) lists, so items the user
has in the model's training data never appear. The metrics of :mod:`recforge.evaluation.metrics`
then compare each list with the user's relevant test items.

Relevant items of a user: the test pairs with ``rating >= min_rating`` when ``min_rating`` is
given (explicit feedback, from the test part's ``ratings``; the gain for graded NDCG is the
rating), otherwise every stored test pair (gain: its ``r`` value). A relevant pair that the
user also has in ``train`` could never be recommended with seen items filtered, so it is left
out and counted (``relevant_seen_in_train``). Users evaluated: those left with at least one
relevant item; means are over them.

:class:`Evaluator` prepares a holdout once (relevant sets, users) and then scores any number of
models for the cost of one ``recommend`` over those users plus one vectorised metrics pass;
:meth:`Evaluator.callback` turns it into a ``fit`` callback that scores the model after each
iteration, for tuning (pruning poor trials) and learning curves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp

from recforge._validation import check_number, check_positive_int
from recforge.data.interactions import Interactions
from recforge.evaluation.metrics import METRICS, metrics_at_k
from recforge.evaluation.report import Evaluation, Report
from recforge.models.base import FitProgress, Recommender
from recforge.models.popular import Popular

__all__ = ["DEFAULT_METRICS", "Evaluator", "ValidationCallback", "compare", "evaluate"]

#: What :func:`evaluate` reports unless told otherwise.
DEFAULT_METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage")

Data: TypeAlias = Interactions | sp.spmatrix | sp.sparray
#: How the lists of some users are computed: ``(model, dense user indices, k) -> ids [n, k]``
Lists: TypeAlias = Callable[[Recommender, np.ndarray, int], np.ndarray]


class Evaluator:
    """A holdout prepared for scoring: relevant sets and users, computed once.

    ``train`` is what the models were fitted on (``Interactions`` or a users x items sparse
    matrix; ``None`` skips the removal of seen pairs from the relevant sets and the check that
    a model was fitted on it); ``test`` the holdout, sharing ``train``'s vocabularies.
    """

    def __init__(
        self,
        train: Data | None,
        test: Data,
        k: int = 10,
        *,
        min_rating: float | None = None,
        metrics: Iterable[str] | None = None,
    ) -> None:
        self.k = check_positive_int("k", k)
        self.metrics = tuple(DEFAULT_METRICS if metrics is None else metrics)
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
        if min_rating is not None:
            check_number("min_rating", min_rating, low=0.0, low_inclusive=False)
        self.min_rating = min_rating
        self.test = test
        self.train = train
        relevant = _relevant(test, min_rating)
        self.n_users, self.n_items = relevant.shape
        self.seen_nnz: int | None = None
        self.relevant_seen_in_train = 0
        if train is not None:
            seen = _matrix(train)
            if seen.shape != relevant.shape:
                raise ValueError(f"train has shape {seen.shape} but test has {relevant.shape}")
            if (
                isinstance(train, Interactions)
                and isinstance(test, Interactions)
                and (train.users != test.users or train.items != test.items)
            ):
                raise ValueError("train and test must share the same user and item vocabularies")
            self.seen_nnz = int(seen.nnz)
            in_train = np.isin(_keys(relevant), _keys(seen), assume_unique=True)
            self.relevant_seen_in_train = int(np.count_nonzero(in_train))
            relevant = _keep_entries(relevant, ~in_train)
        per_user = np.diff(relevant.indptr)
        #: dense indices of the users evaluated (those with at least one relevant item)
        self.users = np.flatnonzero(per_user > 0).astype(np.int32)
        #: their relevant items, row for row ``users``
        self.relevant = relevant[self.users]

    def __repr__(self) -> str:
        return f"Evaluator(k={self.k}, users={len(self.users)}, relevant={self.relevant.nnz})"

    # scoring ------------------------------------------------------------------------------------
    def recommend(self, model: Recommender, lists: Lists | None = None) -> np.ndarray:
        """The served top-``k`` (dense item indices, padding ``-1``) of every evaluated user:
        ``model.recommend(users, k, filter_seen=True)``, or ``lists(model, users, k)`` when given
        (the same lists computed elsewhere, e.g. on a Spark cluster)."""
        self.check_model(model)
        if lists is not None:
            return np.asarray(lists(model, self.users, self.k))
        ids, _ = model.recommend(self.users, k=self.k, filter_seen=True)
        return np.asarray(ids)

    def score(self, model: Recommender) -> dict[str, float]:
        """The mean of each metric over the evaluated users: the cheap call for tuning."""
        result = metrics_at_k(self.recommend(model), self.relevant, self.k, self.metrics)
        return {name: float(value) for name, value in result.items()}

    def evaluate(
        self,
        model: Recommender,
        name: str | None = None,
        *,
        per_user: bool = False,
        lists: Lists | None = None,
    ) -> Evaluation:
        """Score ``model`` and describe it: metrics, users, timings (and per-user values);
        ``lists`` as in :meth:`recommend`."""
        start = time.perf_counter()
        ids = self.recommend(model, lists)
        recommended = time.perf_counter()
        means = metrics_at_k(ids, self.relevant, self.k, self.metrics)
        values = metrics_at_k(ids, self.relevant, self.k, self.metrics, per_user=True) if per_user else None
        done = time.perf_counter()
        return Evaluation(
            name=name or model.name or type(model).__name__,
            k=self.k,
            metrics={key: float(value) for key, value in means.items()},
            users=len(self.users),
            relevant=int(self.relevant.nnz),
            relevant_seen_in_train=self.relevant_seen_in_train,
            recommend_seconds=recommended - start,
            metric_seconds=done - recommended,
            per_user=dict(values) if values is not None else None,  # type: ignore[arg-type]
            user_indices=self.users.copy() if per_user else None,
            info={"min_rating": self.min_rating} if self.min_rating is not None else {},
        )

    def callback(
        self,
        on_score: Callable[[int, dict[str, float]], bool | None] | None = None,
        *,
        every: int = 1,
    ) -> ValidationCallback:
        """A ``fit`` callback scoring the model every ``every`` iterations (see
        :class:`ValidationCallback`)."""
        return ValidationCallback(self, on_score, every=every)

    def check_model(self, model: Recommender) -> None:
        """Raise ``ValueError`` unless ``model`` is fitted on this holdout's users, items and train."""
        if not model.is_fitted:
            raise ValueError(f"{type(model).__name__} is not fitted")
        shape = (len(model.users_), len(model.items_))
        if shape != (self.n_users, self.n_items):
            raise ValueError(
                f"the model knows {shape} users x items, the holdout has {(self.n_users, self.n_items)}"
            )
        if isinstance(self.test, Interactions) and (
            model.users_ != self.test.users or model.items_ != self.test.items
        ):
            raise ValueError("the model's vocabularies differ from the holdout's; fit it on the split train")
        if self.seen_nnz is not None and model.seen_.nnz != self.seen_nnz:
            raise ValueError(
                f"the model was fitted on {model.seen_.nnz} pairs, train has {self.seen_nnz}: "
                "evaluate a model fitted on this train"
            )


class ValidationCallback:
    """A ``fit`` callback: after every ``every``-th iteration, score ``progress.model`` on the
    evaluator's holdout, append ``(iteration, scores)`` to ``history``, and pass them to
    ``on_score``; training stops when ``on_score`` returns True (e.g. a pruned tuning trial)."""

    def __init__(
        self,
        evaluator: Evaluator,
        on_score: Callable[[int, dict[str, float]], bool | None] | None = None,
        *,
        every: int = 1,
    ) -> None:
        check_positive_int("every", every)
        self.evaluator = evaluator
        self.on_score = on_score
        self.every = every
        self.history: list[tuple[int, dict[str, float]]] = []
        self._calls = 0

    def __call__(self, progress: FitProgress) -> bool | None:
        self._calls += 1
        if self._calls % self.every:
            return None
        scores = self.evaluator.score(progress.model)
        self.history.append((progress.iteration, scores))
        return self.on_score(progress.iteration, scores) if self.on_score is not None else None


def evaluate(
    model: Recommender,
    train: Data | None,
    test: Data,
    k: int = 10,
    *,
    min_rating: float | None = None,
    metrics: Iterable[str] | None = None,
    name: str | None = None,
    per_user: bool = False,
) -> Evaluation:
    """Evaluate one fitted model on a holdout (see the module doc for the protocol)."""
    return Evaluator(train, test, k, min_rating=min_rating, metrics=metrics).evaluate(
        model, name, per_user=per_user
    )


def compare(
    models: Mapping[str, Recommender],
    train: Data | None,
    test: Data,
    k: int = 10,
    *,
    min_rating: float | None = None,
    metrics: Iterable[str] | None = None,
    baseline: str | None = None,
    split: Mapping[str, Any] | None = None,
) -> Report:
    """Evaluate several fitted models on the same holdout into a :class:`Report`.

    ``baseline`` names the model the others are measured against; by default the first
    :class:`~recforge.models.Popular` among ``models`` (none if there is none). ``split``
    (e.g. :meth:`Split.summary`) is recorded in the report.
    """
    if not models:
        raise ValueError("compare needs at least one model")
    if baseline is None:
        baseline = next((n for n, m in models.items() if isinstance(m, Popular)), None)
    elif baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not one of the models {list(models)}")
    evaluator = Evaluator(train, test, k, min_rating=min_rating, metrics=metrics)
    evaluations = tuple(evaluator.evaluate(model, name) for name, model in models.items())
    return Report(evaluations, baseline=baseline, split=split)


# helpers ------------------------------------------------------------------------------------------
def _matrix(data: Data) -> sp.csr_matrix:
    m = data.matrix if isinstance(data, Interactions) else sp.csr_matrix(data)
    m = sp.csr_matrix(m, copy=False)
    if not m.has_canonical_format:
        m = m.copy()
        m.sum_duplicates()
    return m


def _relevant(test: Data, min_rating: float | None) -> sp.csr_matrix:
    """Relevant test pairs and their gains, canonical CSR float64 (positive entries only)."""
    if isinstance(test, Interactions):
        if min_rating is not None and test.ratings is None:
            raise ValueError("min_rating needs ratings in the test part, and it has no rating events")
        source = test.ratings if min_rating is not None else test.matrix
    elif sp.issparse(test):
        source = test
    else:
        raise TypeError(f"test must be Interactions or a sparse matrix, got {type(test).__name__}")
    m = sp.csr_matrix(source, dtype=np.float64, copy=True)
    m.sum_duplicates()
    if m.nnz and not np.isfinite(m.data).all():
        raise ValueError("the test part holds NaN or infinite values")
    keep = m.data > 0 if min_rating is None else m.data >= float(min_rating)
    return _keep_entries(m, keep)


def _keys(m: sp.csr_matrix) -> np.ndarray:
    """Row-major keys ``row * n_cols + col`` of the stored entries (sorted for canonical CSR)."""
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows * m.shape[1] + m.indices


def _keep_entries(m: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    out = sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape, dtype=np.float64)
    out.sort_indices()
    return out
