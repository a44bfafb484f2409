"""What each read request answers, as plain functions of a :class:`ServedModel`.

Recommendations for ``user_id`` (``k`` already capped, ``exclude`` as item indices):

1. **foldin** - the user has fresh events (newer than the model's data) on items the model
   knows: the model folds in a history made of the user's training items (their trained ``r``,
   when the model knows the user) and the fresh events (``r`` summed per item), and recommends
   with every item of that history excluded (``Recommender.recommend_for_history``: a
   normal-equation solve against the item factors for factor models, neighbour sums for
   item-kNN, the popular list for Popular).
2. **precomputed** - a user the model knows, without fresh events: the first ``k`` items of
   the precomputed list that are not excluded (a row view, no scoring).
3. **popular** - anyone else: the artifact's time-decayed popular list (``sum_u r_ui`` with the
   decay of ``[weighting]``), minus excluded items.

Similar items for ``item_id``: the precomputed list (source ``factors`` or ``cooccurrence``, as
the artifact says), or the popular list for an item the model does not know.

When the list store cannot be reached (Redis down), answers degrade to the popular list, which
every process holds locally, instead of failing (fallback reason ``store_unavailable``; the
error is logged at most every :data:`WARN_EVERY` seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson

from recforge.lists import Pair, StoreUnavailable
from recforge.serving.fresh import FreshEvent
from recforge.serving.model import ServedModel

__all__ = ["Answer", "item_answer", "render", "user_answer"]

log = logging.getLogger("recforge.serving")
_NONE = np.zeros(0, dtype=np.int32)
#: Seconds between two log lines about an unreachable store.
WARN_EVERY = 10.0
_warned = [0.0]
_warn_lock = threading.Lock()


def warn_store(error: StoreUnavailable) -> None:
    """Log a store failure, at most once every :data:`WARN_EVERY` seconds."""
    with _warn_lock:
        now = time.monotonic()
        if now - _warned[0] < WARN_EVERY:
            return
        _warned[0] = now
    log.error("%s; answering from the popular list meanwhile", error)


@dataclass(frozen=True)
class Answer:
    """Item indices and scores, best first; where they came from; why a fallback was used."""

    source: str
    ids: np.ndarray
    scores: np.ndarray
    fallback: str | None = None


def first_k(ids: np.ndarray, scores: np.ndarray, k: int, drop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` entries of a padded list whose ids are not in ``drop`` (views when
    nothing is dropped)."""
    if not len(drop):
        head = ids[:k]
        if len(head) and head[-1] < 0:  # padding sits at the end of a list
            stop = int(np.argmax(head < 0))
            return head[:stop], scores[:stop]
        return head, scores[: len(head)]
    keep = np.flatnonzero((ids >= 0) & ~np.isin(ids, drop))[:k]
    return ids[keep], scores[keep]


def user_answer(
    served: ServedModel,
    user_id: str,
    k: int,
    exclude: np.ndarray,
    fresh: list[FreshEvent],
    *,
    forget: bool = False,
) -> Answer:
    """Recommendations for one user (see the module docstring). ``forget``: the user erased
    events this version learned from; answer as for a user it does not know (fallback
    ``erased``; :mod:`recforge.serving.erasure`)."""
    user = -1 if forget else served.users.get(user_id)
    if fresh:
        answer = _fold_in(served, user, k, exclude, fresh)
        if answer is not None:
            return answer
    if user >= 0:
        row, reason = _stored(served.lists.user, user, user_id)
        if row is not None:
            ids, scores = first_k(row[0], row[1], k, exclude)
            return Answer("precomputed", ids, scores)
    else:
        reason = "erased" if forget else "unknown_user"
    ids, scores = served.lists.popular()
    ids, scores = first_k(ids, scores, k, exclude)
    return Answer("popular", ids, scores, fallback=reason)


def _stored(lookup: Callable[[int, str], Pair | None], index: int, name: str) -> tuple[Pair | None, str]:
    """A precomputed row from the list store, or ``None`` with the fallback's reason."""
    try:
        row = lookup(index, name)
    except StoreUnavailable as error:
        warn_store(error)
        return None, "store_unavailable"
    return row, "no_list"


def _fold_in(
    served: ServedModel, user: int, k: int, exclude: np.ndarray, fresh: list[FreshEvent]
) -> Answer | None:
    items = served.items.lookup([event.item_id for event in fresh])
    known = items >= 0
    if not known.any():
        return None
    history = items[known]
    values = np.fromiter((event.r for event in fresh), dtype=np.float64, count=len(fresh))[known]
    model = served.model
    if user >= 0:
        seen = model.seen_
        row = slice(seen.indptr[user], seen.indptr[user + 1])
        history = np.concatenate([np.asarray(seen.indices[row], dtype=np.int32), history])
        values = np.concatenate([np.asarray(seen.data[row], dtype=np.float64), values])
    unique, where = np.unique(history, return_inverse=True)
    summed = np.bincount(where, weights=values, minlength=len(unique))
    try:
        ids, scores = model.recommend_for_history(
            unique.astype(np.int32), summed.astype(np.float32), k=k, exclude=exclude if len(exclude) else None
        )
    except Exception:  # a model's fold-in must never fail a request: answer without it
        log.exception("fold-in failed for model %s; answering without fresh events", served.version)
        return None
    valid = ids >= 0
    return Answer("foldin", ids[valid], scores[valid])


def item_answer(served: ServedModel, item_id: str, k: int) -> Answer:
    """Similar items for one item (see the module docstring)."""
    item = served.items.get(item_id)
    if item >= 0:
        row, reason = _stored(served.lists.item, item, item_id)
        if row is not None:
            ids, scores = first_k(row[0], row[1], k, _NONE)
            return Answer(served.item_source, ids, scores)
    else:
        reason = "unknown_item"
    ids, scores = served.lists.popular()
    drop = np.array([item], dtype=np.int32) if item >= 0 else _NONE
    ids, scores = first_k(ids, scores, k, drop)
    return Answer("popular", ids, scores, fallback=reason)


def render(key: str, value: str, served: ServedModel, answer: Answer) -> bytes:
    """The JSON body: ``{key: value, "model_version", "source", "items": [{"item_id", "score"}]}``."""
    names = served.items.names(answer.ids)
    scores = answer.scores.tolist()
    return orjson.dumps(
        {
            key: value,
            "model_version": served.version,
            "source": answer.source,
            "items": [{"item_id": name, "score": score} for name, score in zip(names, scores, strict=True)],
        }
    )
