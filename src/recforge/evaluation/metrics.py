"""Ranking metrics @K over a CSR of relevant items and a ``[n_users, k]`` array of recommended ids.

Inputs, row for row the same users:

* ``recommended``: integer array ``[n_users, >= k]`` of item indices, best first; ``-1`` is
  padding (a list shorter than ``k``) and is never relevant. Only the first ``k`` columns
  count. A row may not name an item twice.
* ``relevant``: sparse ``[n_users, n_items]`` matrix; item ``i`` is relevant to user ``u``
  where ``relevant[u, i] > 0`` (stored entries ``<= 0`` are ignored), and that value is the
  gain ``g_u(i)`` used by graded NDCG. ``R_u`` is the set of ``u``'s relevant items.

With ``l_1 .. l_k`` the first ``k`` ids of ``u``'s list and ``h_j = 1`` when ``l_j`` is in
``R_u`` (else 0), for a user with ``|R_u| > 0``::

    precision@k  = sum_j h_j / k                      (padding counts as a miss)
    recall@k     = sum_j h_j / |R_u|
    hit_rate@k   = 1 if some h_j = 1 else 0
    mrr@k        = 1 / (first j with h_j = 1), 0 when there is none
    DCG@k        = sum_j gain_j / log2(j + 1)          gain_j = h_j (binary) or g_u(l_j) (graded)
    NDCG@k       = DCG@k / IDCG@k                      IDCG: the DCG of the best possible list, the
                                                       min(|R_u|, k) largest gains in order
    AP@k         = sum_j h_j * precision@j / min(|R_u|, k)      (MAP@k: its mean)
    coverage@k   = |distinct ids in all lists' first k| / n_items    (one number, not per user)

Every per-user metric lies in ``[0, 1]``. The public functions return the mean over users with
at least one relevant item (``nan`` when there is none), or with ``per_user=True`` the array of
per-user values, ``nan`` for users without relevant items. :func:`metrics_at_k` computes many at
once from one membership pass.

The per-row work (which of the ``k`` ids are relevant, with their gains; the ideal DCG) is done
by the numba kernels of :mod:`recforge.kernels.ranking`, in parallel over rows; every metric is
then a vectorised NumPy expression over the ``[n_users, k]`` hit and gain arrays. No Python
loop runs over users.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias, overload

import numpy as np
import scipy.sparse as sp

from recforge._validation import check_positive_int
from recforge.kernels.ranking import ideal_dcg, match_topk

__all__ = [
    "METRICS",
    "coverage_at_k",
    "hit_rate_at_k",
    "map_at_k",
    "metrics_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
]

#: Names understood by :func:`metrics_at_k`, in the order reports show them.
METRICS: tuple[str, ...] = (
    "precision",
    "recall",
    "ndcg",
    "ndcg_graded",
    "map",
    "hit_rate",
    "mrr",
    "coverage",
)


@dataclass(frozen=True)
class _Hits:
    """Where the first ``k`` recommended ids meet the relevant sets."""

    k: int
    ids: np.ndarray  # int64 [n, k]: the first k recommended ids
    hit: np.ndarray  # bool [n, k]
    gain: np.ndarray  # float64 [n, k]: g_u(l_j) where hit, else 0
    n_relevant: np.ndarray  # int64 [n]
    relevant: sp.csr_matrix  # canonical: sorted indices, positive values only, float64


def _discounts(k: int) -> np.ndarray:
    """``1 / log2(j + 1)`` for ranks ``j = 1 .. k``."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _check_recommended(recommended: np.ndarray, k: int, n_items: int | None) -> np.ndarray:
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be a 2-D [n_users, k] id array, got shape {rec.shape}")
    if rec.dtype.kind not in "iu":
        raise ValueError(f"recommended must hold integer item indices, got dtype {rec.dtype}")
    if rec.shape[1] < k:
        raise ValueError(f"recommended has {rec.shape[1]} columns, fewer than k={k}")
    rec = rec[:, :k].astype(np.int64, copy=False)
    if rec.size:
        low, high = int(rec.min()), int(rec.max())
        if low < -1:
            raise ValueError(f"recommended holds {low}; ids are item indices >= 0, or -1 for padding")
        if n_items is not None and high >= n_items:
            raise ValueError(f"recommended holds item {high}, outside the {n_items} items")
        ordered = np.sort(rec, axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
        if repeated.any():
            row = int(np.flatnonzero(repeated.any(axis=1))[0])
            raise ValueError(f"recommended row {row} names an item more than once in its first {k}")
    return rec


def _canonical_relevant(relevant: sp.spmatrix | sp.sparray | np.ndarray) -> sp.csr_matrix:
    rel = sp.csr_matrix(relevant, dtype=np.float64, copy=True)
    if rel.nnz and not np.isfinite(rel.data).all():
        raise ValueError("relevant holds NaN or infinite values")
    rel.sum_duplicates()
    rel.data[rel.data < 0] = 0.0
    rel.eliminate_zeros()
    rel.sort_indices()
    return rel


def _hits(recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray | np.ndarray, k: object) -> _Hits:
    k = check_positive_int("k", k)
    rel = _canonical_relevant(relevant)
    n_users, n_items = rel.shape
    rec = _check_recommended(recommended, k, n_items)
    if rec.shape[0] != n_users:
        raise ValueError(f"recommended has {rec.shape[0]} rows but relevant has {n_users}")
    n_relevant = np.diff(rel.indptr).astype(np.int64)
    hit, gain = match_topk(rel.indptr, rel.indices, rel.data, rec)
    return _Hits(k, rec, hit, gain, n_relevant, rel)


# per-user values ----------------------------------------------------------------------------------
def _masked(values: np.ndarray, h: _Hits) -> np.ndarray:
    """Per-user values with ``nan`` for users without relevant items."""
    return np.where(h.n_relevant > 0, values, np.nan)


def _per_user_precision(h: _Hits) -> np.ndarray:
    return _masked(h.hit.sum(axis=1) / h.k, h)


def _per_user_recall(h: _Hits) -> np.ndarray:
    return _masked(h.hit.sum(axis=1) / np.maximum(h.n_relevant, 1), h)


def _per_user_hit_rate(h: _Hits) -> np.ndarray:
    return _masked(np.asarray(h.hit.any(axis=1), dtype=np.float64), h)


def _per_user_mrr(h: _Hits) -> np.ndarray:
    first = np.argmax(h.hit, axis=1)
    return _masked(np.where(h.hit.any(axis=1), 1.0 / (first + 1.0), 0.0), h)


def _per_user_map(h: _Hits) -> np.ndarray:
    ranks = np.arange(1, h.k + 1, dtype=np.float64)
    precision_at_j = np.cumsum(h.hit, axis=1) / ranks
    ap = (precision_at_j * h.hit).sum(axis=1) / np.maximum(np.minimum(h.n_relevant, h.k), 1)
    return _masked(ap, h)


def _per_user_ndcg(h: _Hits) -> np.ndarray:
    discount = _discounts(h.k)
    dcg = h.hit @ discount
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(h.n_relevant, h.k)]
    return _masked(dcg / np.where(ideal > 0, ideal, 1.0), h)


def _per_user_ndcg_graded(h: _Hits) -> np.ndarray:
    dcg = h.gain @ _discounts(h.k)
    ideal = ideal_dcg(h.relevant.indptr, h.relevant.data, h.k)
    return _masked(dcg / np.where(ideal > 0, ideal, 1.0), h)


_PER_USER = {
    "precision": _per_user_precision,
    "recall": _per_user_recall,
    "ndcg": _per_user_ndcg,
    "ndcg_graded": _per_user_ndcg_graded,
    "map": _per_user_map,
    "hit_rate": _per_user_hit_rate,
    "mrr": _per_user_mrr,
}


def _mean(values: np.ndarray) -> float:
    """Mean over the non-``nan`` entries; ``nan`` (without a warning) when there are none."""
    valid = ~np.isnan(values)
    return float(values[valid].mean()) if valid.any() else float("nan")


def _one(
    name: str,
    recommended: np.ndarray,
    relevant: sp.spmatrix | sp.sparray | np.ndarray,
    k: int,
    per_user: bool,
) -> float | np.ndarray:
    values = _PER_USER[name](_hits(recommended, relevant, k))
    return values if per_user else _mean(values)


# the public functions -----------------------------------------------------------------------------
Relevant: TypeAlias = sp.spmatrix | sp.sparray | np.ndarray


@overload
def precision_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: Literal[False] = False
) -> float: ...
@overload
def precision_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: Literal[True]
) -> np.ndarray: ...
def precision_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: bool = False
) -> float | np.ndarray:
    """Precision@k: the share of the ``k`` slots that hold a relevant item (module doc)."""
    return _one("precision", recommended, relevant, k, per_user)


@overload
def recall_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: Literal[False] = False
) -> float: ...
@overload
def recall_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: Literal[True]
) -> np.ndarray: ...
def recall_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: bool = False
) -> float | np.ndarray:
    """Recall@k: the share of the user's relevant items found in the first ``k`` (``/ |R_u|``)."""
    return _one("recall", recommended, relevant, k, per_user)


@overload
def ndcg_at_k(
    recommended: np.ndarray,
    relevant: Relevant,
    k: int,
    *,
    graded: bool = False,
    per_user: Literal[False] = False,
) -> float: ...
@overload
def ndcg_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, graded: bool = False, per_user: Literal[True]
) -> np.ndarray: ...
def ndcg_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, graded: bool = False, per_user: bool = False
) -> float | np.ndarray:
    """NDCG@k with the ``1 / log2(rank + 1)`` discount; gains are 1 per relevant item, or with
    ``graded=True`` the stored relevance values (linear gain), against the ideal ordering."""
    return _one("ndcg_graded" if graded else "ndcg", recommended, relevant, k, per_user)


@overload
def map_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: Literal[False] = False
) -> float: ...
@overload
def map_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: Literal[True]
) -> np.ndarray: ...
def map_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: bool = False
) -> float | np.ndarray:
    """MAP@k: mean average precision, each user's AP normalised by ``min(|R_u|, k)``."""
    return _one("map", recommended, relevant, k, per_user)


@overload
def hit_rate_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: Literal[False] = False
) -> float: ...
@overload
def hit_rate_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: Literal[True]
) -> np.ndarray: ...
def hit_rate_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: bool = False
) -> float | np.ndarray:
    """Hit rate@k: the share of users with at least one relevant item in their first ``k``."""
    return _one("hit_rate", recommended, relevant, k, per_user)


@overload
def mrr_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: Literal[False] = False
) -> float: ...
@overload
def mrr_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: Literal[True]
) -> np.ndarray: ...
def mrr_at_k(
    recommended: np.ndarray, relevant: Relevant, k: int, *, per_user: bool = False
) -> float | np.ndarray:
    """MRR@k: mean reciprocal rank of the first relevant item (0 when none is in the first ``k``)."""
    return _one("mrr", recommended, relevant, k, per_user)


def coverage_at_k(recommended: np.ndarray, n_items: int, k: int) -> float:
    """Catalogue coverage@k: the share of the ``n_items`` items that appear in any list's first
    ``k`` (padding ignored). Counts every row, whether or not the user has relevant items."""
    k = check_positive_int("k", k)
    n_items = check_positive_int("n_items", n_items)
    return _coverage(_check_recommended(recommended, k, n_items), n_items)


def _coverage(ids: np.ndarray, n_items: int) -> float:
    if n_items == 0:
        return float("nan")
    return float(np.count_nonzero(np.bincount(ids[ids >= 0], minlength=n_items))) / n_items


def metrics_at_k(
    recommended: np.ndarray,
    relevant: Relevant,
    k: int,
    metrics: Iterable[str] | None = None,
    *,
    per_user: bool = False,
) -> dict[str, float] | dict[str, np.ndarray]:
    """Several metrics @k from one membership pass: ``{name: value}`` in the order asked.

    ``metrics`` are names from :data:`METRICS` (default: all of them). Values are means over
    users with relevant items, as the single-metric functions return; with ``per_user=True``
    they are the per-user arrays (``nan`` for users without relevant items) and ``coverage``,
    a property of the whole set of lists rather than of a user, is left out.
    """
    names = list(METRICS if metrics is None else metrics)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    h = _hits(recommended, relevant, k)
    out: dict[str, float | np.ndarray] = {}
    for name in names:
        if name == "coverage":
            if not per_user:
                out[name] = _coverage(h.ids, h.relevant.shape[1])
            continue
        values = _PER_USER[name](h)
        out[name] = values if per_user else _mean(values)
    return out  # type: ignore[return-value]
