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

Every answer names its ``source``; scores compare only within one source: ``precomputed`` and
``foldin`` give the model's own score (``x_u . y_i`` for factor models, the summed neighbour
similarities for item-kNN), ``popular`` an item's mass divided by the most popular item's (so
``1.0`` for the most popular item, on ``[0, 1]``), and similar items the cosine similarity
(``factors``) or the neighbour weight (``cooccurrence``).

With ``explain=n``, each recommended item also gets the ``n`` history items that contributed
most to its score, with their shares (:meth:`Recommender.explain_history
<recforge.models.base.Recommender.explain_history>`): the history is the fold-in's for a
fold-in answer, the user's training items for a precomputed one; a popular answer, or a model
that cannot explain, gets empty lists. It is a separate step after the answer
(:func:`explanations`), paid for only when asked.

Similar items for ``item_id``: the precomputed list (source ``factors`` or ``cooccurrence``, as
the artifact says), or the popular list for an item the model does not know.

When the list store cannot be reached (Redis down), answers degrade to the popular list, which
every process holds locally, instead of failing (fallback reason ``store_unavailable``; the
error is logged at most every :data:`WARN_EVERY` seconds).

Every answer is rendered by :func:`body`, which gives it a new ``recommendation_id`` and
records it as an impression (:mod:`recforge.online.impressions`: one queue append, written by a
background thread), so any route that answers through it is measured online.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from recforge.lists import Pair, StoreUnavailable
from recforge.online.impressions import Impression, new_recommendation_id
from recforge.serving.fresh import FreshEvent
from recforge.serving.model import ServedModel

__all__ = [
    "Answer",
    "body",
    "explanations",
    "item_answer",
    "popular_list",
    "render",
    "user_answer",
    "user_history",
]

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
    ids, scores = popular_list(served)
    ids, scores = first_k(ids, scores, k, exclude)
    return Answer("popular", ids, scores, fallback=reason)


def popular_list(served: ServedModel) -> Pair:
    """The popular fallback with its scores on ``[0, 1]``: each item's time-decayed mass divided
    by the most popular item's (so it does not read like a model score or a raw count)."""
    ids, mass = served.lists.popular()
    top = float(mass[0]) if len(mass) and mass[0] > 0 else 1.0
    return ids, (np.asarray(mass, dtype=np.float32) / np.float32(top)).astype(np.float32)


def _stored(lookup: Callable[[int, str], Pair | None], index: int, name: str) -> tuple[Pair | None, str]:
    """A precomputed row from the list store, or ``None`` with the fallback's reason."""
    try:
        row = lookup(index, name)
    except StoreUnavailable as error:
        warn_store(error)
        return None, "store_unavailable"
    return row, "no_list"


def user_history(
    served: ServedModel, user: int, fresh: list[FreshEvent]
) -> tuple[np.ndarray, np.ndarray, int]:
    """The history a user is scored from: their training items (their trained ``r``, when the
    model knows the user) and the fresh events on known items; distinct item indices with
    ``r`` summed per item, and how many fresh events were on known items."""
    items = served.items.lookup([event.item_id for event in fresh]) if fresh else _NONE
    known = items >= 0
    history = items[known]
    values = np.fromiter((event.r for event in fresh), dtype=np.float64, count=len(fresh))[known]
    if user >= 0:
        seen = served.model.seen_
        row = slice(seen.indptr[user], seen.indptr[user + 1])
        history = np.concatenate([np.asarray(seen.indices[row], dtype=np.int32), history])
        values = np.concatenate([np.asarray(seen.data[row], dtype=np.float64), values])
    unique, where = np.unique(history, return_inverse=True)
    summed = np.bincount(where, weights=values, minlength=len(unique))
    return unique.astype(np.int32), summed, int(known.sum())


def _fold_in(
    served: ServedModel, user: int, k: int, exclude: np.ndarray, fresh: list[FreshEvent]
) -> Answer | None:
    unique, summed, fresh_known = user_history(served, user, fresh)
    if not fresh_known:
        return None
    model = served.model
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
    ids, scores = popular_list(served)
    drop = np.array([item], dtype=np.int32) if item >= 0 else _NONE
    ids, scores = first_k(ids, scores, k, drop)
    return Answer("popular", ids, scores, fallback=reason)


def explanations(
    served: ServedModel, user_id: str, answer: Answer, fresh: list[FreshEvent], n: int
) -> list[list[dict[str, object]]]:
    """For each item of ``answer``, the ``n`` history items that contributed most to its score:
    ``[{"item_id", "contribution", "share"}]`` (empty for a popular answer or a model that
    cannot explain; see the module docstring)."""
    model = served.model
    empty: list[list[dict[str, object]]] = [[] for _ in range(len(answer.ids))]
    if answer.source == "popular" or not model.explains or not len(answer.ids):
        return empty
    user = served.users.get(user_id)
    history, values, _ = user_history(served, user, fresh if answer.source == "foldin" else [])
    if not len(history):
        return empty
    try:
        found = model.explain_history(history, values, answer.ids, n=n)
    except Exception:  # an explanation must never fail a request: answer without it
        log.exception("explanation failed for model %s", served.version)
        return empty
    out = []
    for explanation in found:
        names = served.items.names(explanation.items)
        out.append(
            [
                {"item_id": name, "contribution": contribution, "share": share}
                for name, contribution, share in zip(
                    names, explanation.contributions.tolist(), explanation.shares.tolist(), strict=True
                )
            ]
        )
    return out


def render(
    key: str,
    value: str,
    served: ServedModel,
    answer: Answer,
    explained: list[list[dict[str, object]]] | None = None,
    *,
    user_id: str | None = None,
) -> bytes:
    """The JSON body of :func:`body`."""
    return orjson.dumps(body(key, value, served, answer, explained, user_id=user_id))


def body(
    key: str,
    value: str,
    served: ServedModel,
    answer: Answer,
    explained: list[list[dict[str, object]]] | None = None,
    *,
    user_id: str | None = None,
) -> dict[str, Any]:
    """``{key: value, "recommendation_id", "model_version", "source", "items": [{"item_id",
    "score"}]}`` (each item with its ``"explanation"`` when ``explained`` is given), plus
    ``"experiment": {"name", "arm"}`` while the answer is an experiment's; recorded as an
    impression of ``user_id`` (``value`` when ``key`` is ``"user_id"``) when the version records
    them."""
    names = served.items.names(answer.ids)
    recommendation_id = new_recommendation_id()
    if served.impressions is not None:
        served.impressions.record(
            Impression(
                recommendation_id,
                value if key == "user_id" else user_id,
                value if key == "item_id" else None,
                served.version,
                answer.source,
                served.experiment,
                served.arm,
                names,
                time.time_ns() // 1000,
            )
        )
    scores = answer.scores.tolist()
    items: list[dict[str, object]] = [
        {"item_id": name, "score": score} for name, score in zip(names, scores, strict=True)
    ]
    if explained is not None:
        for item, explanation in zip(items, explained, strict=True):
            item["explanation"] = explanation
    out: dict[str, Any] = {
        key: value,
        "recommendation_id": recommendation_id,
        "model_version": served.version,
        "source": answer.source,
        "items": items,
    }
    if served.experiment is not None:
        out["experiment"] = {"name": served.experiment, "arm": served.arm}
    return out
