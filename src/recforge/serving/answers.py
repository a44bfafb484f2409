"""What each read request answers, as plain functions of a :class:`ServedModel` and the catalog
state read once for the request (:class:`~recforge.serving.live_catalog.CatalogState`).

Every answer is over the items eligible for the request: available, in any of the requested
categories (``Query.categories``; any item without), not excluded; at most ``Query.cap`` cold
items among the first ``k``, the others after every warm item (:mod:`recforge.serving.ranking`).

Recommendations for ``user_id``:

1. **foldin** - the user has fresh events (newer than the model's data) on items the model
   knows: a history made of the user's training items (their trained ``r``, when the model
   knows the user) and the fresh events (``r`` summed per item) is folded in, and the eligible
   items are ranked exactly for it, every item of the history excluded.
2. **precomputed** - a user the model knows, without fresh events: the precomputed list (the
   category's own list when one category is asked and the version has one), filtered; scored
   exactly when the filtered list is too short to be trusted.
3. **popular** - anyone else: the time-decayed popular list (``sum_u r_ui``), filtered; the
   category's items ranked by popularity when it is too short.

Similar items for ``item_id``: the precomputed list (source ``factors`` or ``cooccurrence``, as the
artifact says), filtered, or scored exactly; for an item that arrived after the model was
trained, its attribute-mapped factors (factor models); the popular list for an unknown item.
Category pages: :func:`category_popular` and :func:`category_latest` (newest by ``created_at``).

Every answer names its ``source``; scores compare only within one source: ``precomputed`` and
``foldin`` give the model's own score (``x_u . y_i`` for factor models, the summed neighbour
similarities for item-kNN), ``popular`` an item's mass divided by the most popular item's (so
``1.0`` for the most popular item, on ``[0, 1]``), similar items the cosine similarity
(``factors``) or the neighbour weight (``cooccurrence``), and ``latest`` the Unix time an item
was created.

A user who erased events the version learned from (``forget``; :mod:`recforge.serving.erasure`)
is answered as a user the version does not know (fallback ``erased``).

With ``explain=n``, each recommended item also gets the ``n`` history items that contributed
most to its score, with their shares (:meth:`Recommender.explain_history
<recforge.models.base.Recommender.explain_history>`): the history is the fold-in's for a
fold-in answer, the user's training items for a precomputed one; a popular answer, a model
that cannot explain, or an item that arrived after training gets an empty list. It is a
separate step after the answer (:func:`explanations`), paid for only when asked.

When the list store cannot be reached (Redis down), answers degrade to the popular list, which
every process holds locally, instead of failing (fallback reason ``store_unavailable``; the
error is logged at most every :data:`WARN_EVERY` seconds).

Every answer is rendered by :func:`body`, which gives it a new ``recommendation_id`` and
records it as an impression (:mod:`recforge.online.recorder`: one queue append, written by the
server's impression writer process), so any route that answers through it is measured online.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from recforge.lists import Pair, StoreUnavailable
from recforge.online.impressions import Impression, new_recommendation_id
from recforge.serving.fresh import FreshEvent
from recforge.serving.live_catalog import COLD, UNAVAILABLE, CatalogState
from recforge.serving.model import ServedModel
from recforge.serving.ranking import Ranked

__all__ = [
    "NO_ITEMS",
    "Answer",
    "Query",
    "body",
    "category_latest",
    "category_popular",
    "explanations",
    "item_answer",
    "render",
    "user_answer",
    "user_history",
]

log = logging.getLogger("recforge.serving")
#: No item indices (``Query.exclude`` when nothing is excluded).
NO_ITEMS = np.zeros(0, dtype=np.int32)
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
class Query:
    """What a request asks: ``k`` items, never ``exclude`` (sorted served-space indices), only
    of ``categories`` (``None``: any), at most ``cap`` cold ones among the first ``k``."""

    k: int
    exclude: np.ndarray = field(default_factory=lambda: NO_ITEMS)
    categories: tuple[str, ...] | None = None
    cap: int = 0


@dataclass(frozen=True)
class Answer:
    """Item indices (served space) and scores, best first; where they came from; why a fallback
    was used."""

    source: str
    ids: np.ndarray
    scores: np.ndarray
    fallback: str | None = None

    @classmethod
    def of(cls, source: str, ranked: Ranked, fallback: str | None = None) -> Answer:
        return cls(source, ranked.ids, ranked.scores, fallback)


# eligibility --------------------------------------------------------------------------------
def _candidates(state: CatalogState, query: Query, drop: np.ndarray) -> np.ndarray:
    """Sorted served-space indices eligible for the query, minus ``drop``."""
    candidates = state.candidates(query.categories)
    if candidates is None:
        candidates = np.flatnonzero(state.available).astype(np.int32)
    if len(query.exclude):
        drop = np.union1d(query.exclude, drop) if len(drop) else query.exclude
    if len(drop):
        candidates = candidates[~_member(candidates, drop)]
    return candidates


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` by binary search (``sorted_set`` sorted, unique)."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values


def _keep(state: CatalogState, ids: np.ndarray, query: Query, drop: np.ndarray = NO_ITEMS) -> np.ndarray:
    """Which entries of a precomputed row (padding ``-1``) are eligible for the query."""
    valid = ids >= 0
    keep = valid.copy()
    keep[valid] = state.available[ids[valid]]
    if query.categories is not None:
        candidates = state.candidates(query.categories)
        assert candidates is not None
        keep[valid] &= _member(ids[valid], candidates)
    for banned in (query.exclude, drop):
        if len(banned):
            keep[valid] &= ~_member(ids[valid], banned)
    return keep


def _extras(state: CatalogState, query: Query, drop: np.ndarray = NO_ITEMS) -> np.ndarray:
    """The eligible items the version does not know (arrived after training)."""
    if state.n_items == state.n_model:
        return NO_ITEMS
    candidates = state.candidates(query.categories)
    if candidates is None:
        extras = state.n_model + np.flatnonzero(state.available[state.n_model :]).astype(np.int32)
    else:
        extras = candidates[candidates >= state.n_model]
    for banned in (query.exclude, drop):
        if len(banned) and len(extras):
            extras = extras[~_member(extras, banned)]
    return extras


# recommendations ----------------------------------------------------------------------------
def user_answer(
    served: ServedModel,
    state: CatalogState,
    user_id: str,
    query: Query,
    fresh: list[FreshEvent],
    *,
    forget: bool = False,
) -> Answer:
    """Recommendations for one user (see the module docstring). ``forget``: the user erased
    events this version learned from; answer as for a user it does not know."""
    user = -1 if forget else served.users.get(user_id)
    if fresh:
        answer = _fold_in(served, state, user, query, fresh)
        if answer is not None:
            return answer
    ranker = served.ranker
    if user >= 0:
        row, reason = _stored(served.lists.user, user, user_id)
        if query.categories is not None and len(query.categories) == 1:
            listed = _stored_category(served, query.categories[0], user, user_id)
            row = listed if listed is not None else row
        if row is not None:
            fast = _head(state, row, query)
            if fast is not None:
                return Answer.of("precomputed", fast)
            keep = _keep(state, row[0], query)
            extras = _extras(state, query) if ranker.scores_extras(state) else NO_ITEMS
            ranked = ranker.from_list(state, row, keep, query.k, query.cap, extras=extras, user=user)
            if ranked is None:
                candidates = _candidates(state, query, ranker.seen(user))
                ranked = ranker.exact(state, candidates, query.k, query.cap, user=user)
            return Answer.of("precomputed", ranked)
    else:
        reason = "erased" if forget else "unknown_user"
    return Answer.of("popular", _popular(served, state, query, NO_ITEMS), fallback=reason)


def _head(state: CatalogState, row: Pair, query: Query) -> Ranked | None:
    """The answer from the head of the list when only availability filters it (no category,
    nothing excluded: the common request): the first ``k`` available entries among its first
    ``4 k``, when there are ``k`` and at most ``cap`` of them are cold (what the full path gives
    then, for a few microseconds); ``None`` otherwise."""
    if query.categories is not None or len(query.exclude):
        return None
    k = query.k
    ids, scores = row
    head = ids[:k]
    # all available and warm (count_nonzero: a third of the time of ndarray.any on ten items)
    if len(head) == k and head[-1] >= 0 and not np.count_nonzero(state.flags[head]):
        return Ranked(head, scores[:k])
    ids, scores = ids[: 4 * k], scores[: 4 * k]
    flags = state.flags[ids]
    keep = np.flatnonzero(((flags & UNAVAILABLE) == 0) & (ids >= 0))[:k]
    if len(keep) < k or np.count_nonzero(flags[keep] & COLD) > query.cap:
        return None
    return Ranked(ids[keep], scores[keep])


def _popular(served: ServedModel, state: CatalogState, query: Query, drop: np.ndarray) -> Ranked:
    """The eligible items by popularity, scores divided by the most popular item's mass."""
    row = served.lists.popular()
    ranked = served.ranker.from_list(state, row, _keep(state, row[0], query, drop), query.k, query.cap)
    if ranked is None:
        ranked = served.ranker.exact(state, _candidates(state, query, drop), query.k, query.cap)
    mass = row[1]
    top = float(mass[0]) if len(mass) and mass[0] > 0 else 1.0
    return Ranked(ranked.ids, (np.asarray(ranked.scores, dtype=np.float64) / top).astype(np.float32))


def _stored(lookup: Callable[[int, str], Pair | None], index: int, name: str) -> tuple[Pair | None, str]:
    """A precomputed row from the list store, or ``None`` with the fallback's reason."""
    try:
        row = lookup(index, name)
    except StoreUnavailable as error:
        warn_store(error)
        return None, "store_unavailable"
    return row, "no_list"


def _stored_category(served: ServedModel, category: str, user: int, user_id: str) -> Pair | None:
    if category not in served.lists.categories:
        return None
    try:
        return served.lists.category(category, user, user_id)
    except StoreUnavailable as error:
        warn_store(error)
        return None


def user_history(
    served: ServedModel, user: int, fresh: list[FreshEvent]
) -> tuple[np.ndarray, np.ndarray, int]:
    """The history a user is scored from: their training items (their trained ``r``, when the
    model knows the user) and the fresh events on known items; distinct item indices with
    ``r`` summed per item (float32), and how many fresh events were on known items."""
    items = served.items.lookup([event.item_id for event in fresh]) if fresh else NO_ITEMS
    known = items >= 0
    history = items[known]
    values = np.fromiter((event.r for event in fresh), dtype=np.float64, count=len(fresh))[known]
    if user >= 0:
        seen = served.model.seen_
        row = slice(seen.indptr[user], seen.indptr[user + 1])
        history = np.concatenate([np.asarray(seen.indices[row], dtype=np.int32), history])
        values = np.concatenate([np.asarray(seen.data[row], dtype=np.float64), values])
    unique, where = np.unique(history, return_inverse=True)
    summed = np.bincount(where, weights=values, minlength=len(unique)).astype(np.float32)
    return unique.astype(np.int32), summed, int(known.sum())


def _fold_in(
    served: ServedModel, state: CatalogState, user: int, query: Query, fresh: list[FreshEvent]
) -> Answer | None:
    unique, summed, fresh_known = user_history(served, user, fresh)
    if not fresh_known:
        return None
    try:
        candidates = _candidates(state, query, unique)
        ranked = served.ranker.exact(state, candidates, query.k, query.cap, history=(unique, summed))
    except Exception:  # a model's fold-in must never fail a request: answer without it
        log.exception("fold-in failed for model %s; answering without fresh events", served.version)
        return None
    return Answer.of("foldin", ranked)


def explanations(
    served: ServedModel, user_id: str, answer: Answer, fresh: list[FreshEvent], n: int
) -> list[list[dict[str, object]]]:
    """For each item of ``answer``, the ``n`` history items that contributed most to its score:
    ``[{"item_id", "contribution", "share"}]`` (empty where there is nothing to explain; see
    the module docstring)."""
    model = served.model
    empty: list[list[dict[str, object]]] = [[] for _ in range(len(answer.ids))]
    if answer.source == "popular" or not model.explains or not len(answer.ids):
        return empty
    user = served.users.get(user_id)
    history, values, _ = user_history(served, user, fresh if answer.source == "foldin" else [])
    trained = np.flatnonzero(answer.ids < len(model.items_))  # not the items that arrived since
    if not len(history) or not len(trained):
        return empty
    try:
        found = model.explain_history(history, values, answer.ids[trained], n=n)
    except Exception:  # an explanation must never fail a request: answer without it
        log.exception("explanation failed for model %s", served.version)
        return empty
    for position, explanation in zip(trained.tolist(), found, strict=True):
        names = served.items.names(explanation.items)
        empty[position] = [
            {"item_id": name, "contribution": contribution, "share": share}
            for name, contribution, share in zip(
                names, explanation.contributions.tolist(), explanation.shares.tolist(), strict=True
            )
        ]
    return empty


# similar items ---------------------------------------------------------------------------------
def item_answer(served: ServedModel, state: CatalogState, item_id: str, query: Query) -> Answer:
    """Similar items for one item (see the module docstring)."""
    item = served.catalog.index(item_id)
    if item >= state.n_items:  # arrived after this state was read
        item = -1
    drop = np.array([item], dtype=np.int32) if item >= 0 else NO_ITEMS
    ranker = served.ranker
    reason = "unknown_item"
    if 0 <= item < state.n_model:
        row, reason = _stored(served.lists.item, item, item_id)
        if row is not None:
            keep = _keep(state, row[0], query, drop)
            extras = _extras(state, query, drop) if ranker.scores_extras(state) else NO_ITEMS
            ranked = ranker.from_list(
                state,
                row,
                keep,
                query.k,
                query.cap,
                extras=extras,
                similar_to=item,
                complete=served.item_source != "cooccurrence",
            )
            if ranked is None:
                candidates = _candidates(state, query, drop)
                ranked = ranker.exact(state, candidates, query.k, query.cap, similar_to=item)
            return Answer.of(served.item_source, ranked)
    elif item >= state.n_model and ranker.scores_extras(state):
        candidates = _candidates(state, query, drop)
        ranked = ranker.exact(state, candidates, query.k, query.cap, similar_to=item)
        return Answer.of(served.item_source, ranked)
    return Answer.of("popular", _popular(served, state, query, drop), fallback=reason)


# categories --------------------------------------------------------------------------------------
def category_popular(served: ServedModel, state: CatalogState, query: Query) -> Answer:
    """The category's available items by popularity (``query.categories`` names it)."""
    return Answer.of("popular", _popular(served, state, query, NO_ITEMS))


def category_latest(state: CatalogState, category: str, k: int) -> Answer:
    """The category's ``k`` newest available items by ``created_at``; scores are Unix seconds."""
    ids = state.latest(category, k)
    return Answer("latest", ids, (state.created_us[ids] / 1e6).astype(np.float64))


# the body ------------------------------------------------------------------------------------------
def render(
    key: str,
    value: str,
    served: ServedModel,
    state: CatalogState,
    answer: Answer,
    fields: tuple[str, ...] = (),
    explained: list[list[dict[str, object]]] | None = None,
    *,
    user_id: str | None = None,
) -> bytes:
    """The JSON body of :func:`body`."""
    return orjson.dumps(body(key, value, served, state, answer, fields, explained, user_id=user_id))


def body(
    key: str,
    value: str,
    served: ServedModel,
    state: CatalogState,
    answer: Answer,
    fields: tuple[str, ...] = (),
    explained: list[list[dict[str, object]]] | None = None,
    *,
    user_id: str | None = None,
) -> dict[str, Any]:
    """``{key: value, "recommendation_id", "model_version", "source", "items": [{"item_id",
    "score"}]}``, plus ``"experiment": {"name", "arm"}`` while the answer is an experiment's.
    Cold items carry ``"cold": true``; ``fields`` are copied from each item's attributes
    (``null`` where it has none); each item gets its ``"explanation"`` when ``explained`` is
    given. Recorded as an impression of ``user_id`` (``value`` when ``key`` is ``"user_id"``)
    when the version records them."""
    ids = answer.ids
    names = state.names(ids, served.items)
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
    items: list[dict[str, object]]
    if not fields and explained is None and not np.count_nonzero(state.cold[ids]):  # the common answer
        items = [{"item_id": name, "score": score} for name, score in zip(names, scores, strict=True)]
    else:
        cold = state.cold[ids].tolist() if len(ids) else []
        items = []
        for j, (name, score) in enumerate(zip(names, scores, strict=True)):
            entry: dict[str, object] = {"item_id": name, "score": score}
            if cold[j]:
                entry["cold"] = True
            if fields:
                blob = state.attributes[int(ids[j])]
                attributes = orjson.loads(blob) if blob else {}
                for field_name in fields:
                    entry[field_name] = attributes.get(field_name)
            if explained is not None:
                entry["explanation"] = explained[j]
            items.append(entry)
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
