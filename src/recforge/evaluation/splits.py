"""Train/test splits: global temporal cut, leave-last-n per user, per-user random holdout, and
per-user folds (several disjoint per-user holdouts of the same data, for tuning).

Each split assigns every input row to exactly one side and returns a :class:`Split`: ``train``
and ``test`` :class:`~recforge.data.Interactions` sharing the train vocabularies, the boolean
``test_mask`` over the input rows, and a report of what could not be kept.

Inputs are event tables (the :mod:`recforge.data.schema` columns; time lives there, so the
temporal splits need them) or, for the random holdout, an already built ``Interactions``
(its stored ``(user, item)`` pairs are the rows; both parts keep its values and vocabularies,
and a pair's ``matrix`` and ``ratings`` entries stay together). From events, ``train`` is built with
:meth:`Interactions.from_events` with the given ``weighting`` (default ``Weighting()``) as of
the end of the training data: with no ``reference_time``, ages are measured from the cut of a
temporal split (the moment its model is trained "as of"), and from the newest training event
for the per-user splits, whose test events are interleaved in time with the train ones;
``test`` is built with the same weights, **no time decay** (a test event is relevant however
old it is) and the train vocabularies.

Users and items that occur only in the test part cannot be scored by a model trained on the
train part: their test events are left out of ``test`` (they have no row or column there), and
the split reports them, never silently: ``test_only_users`` and ``test_only_items`` (their
external ids) and ``dropped_test`` (how many test rows that removed). ``users_without_test``
counts the users with no test row at all (too few interactions, or all before the cut); they
are not evaluated.

Randomness follows the seed contract: ``random_state`` is an int seed or a
``numpy.random.Generator``; the same input (same row order) and seed give the same split.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recforge._time import iso_from_us, to_us
from recforge._validation import check_number, check_random_state
from recforge.data.interactions import Interactions
from recforge.data.schema import CONTENT_COLUMNS, timestamps_us
from recforge.weighting import Weighting

__all__ = ["Split", "leave_last_n_split", "per_user_folds", "random_split", "temporal_split"]


@dataclass(frozen=True, eq=False)
class Split:
    """A train/test split and its report (see the module doc).

    ``test_mask[r]`` is True when input row ``r`` went to the test part (for an
    ``Interactions`` input, rows are its stored pairs in row-major order). ``params`` records
    the method and its settings.
    """

    train: Interactions
    test: Interactions
    test_mask: np.ndarray
    params: dict[str, Any]
    test_only_users: np.ndarray
    test_only_items: np.ndarray
    dropped_test: int
    users_without_test: int
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: method, settings, sizes and the report."""
        n_test_rows = int(np.count_nonzero(self.test_mask))
        return {
            **self.params,
            "rows": len(self.test_mask),
            "train_rows": len(self.test_mask) - n_test_rows,
            "test_rows": n_test_rows,
            "train_pairs": self.train.nnz,
            "test_pairs": self.test.nnz,
            "users": self.train.n_users,
            "items": self.train.n_items,
            "test_only_users": len(self.test_only_users),
            "test_only_items": len(self.test_only_items),
            "dropped_test": self.dropped_test,
            "users_without_test": self.users_without_test,
        }


# the splits ---------------------------------------------------------------------------------------
def random_split(
    data: pa.Table | Interactions,
    test_fraction: float = 0.2,
    *,
    random_state: int | np.random.Generator | None = 0,
    min_train: int = 1,
    weighting: Weighting | None = None,
) -> Split:
    """Per-user random holdout: about ``test_fraction`` of each user's rows go to test.

    One uniform key is drawn per input row, in row order, from ``random_state``; of a user's
    ``n_u`` rows, the ``t_u`` with the smallest keys go to test, where
    ``t_u = min(floor(test_fraction * n_u + 0.5), n_u - min_train)`` (at least 0): the fraction
    rounded half up, but never leaving fewer than ``min_train`` train rows. So a user with
    ``n_u <= min_train`` rows, or with too few for the rounded fraction to reach one row (fewer
    than 3 at 0.2), keeps everything in train and is counted in ``users_without_test``.

    On ml-100k (``u.data`` in file order, ``test_fraction=0.2``, seed 0) this is the split of the
    reference numbers in ``../shared/datasets/README.md``.
    """
    check_number("test_fraction", test_fraction, low=0.0, high=1.0, low_inclusive=False)
    check_number("min_train", min_train, integer=True, low=0)
    rng = check_random_state(random_state)
    if isinstance(data, Interactions):
        users, _, _ = _pairs(data)
    else:
        _check_events(data, CONTENT_COLUMNS)
        users = _codes(data.column("user_id"))
    keys = rng.random(len(users))
    counts = np.bincount(users)
    wanted = np.floor(test_fraction * counts + 0.5).astype(np.int64)
    n_test = np.clip(np.minimum(wanted, counts - min_train), 0, None)
    rank = _rank_within_user(users, counts, np.lexsort((keys, users)))
    test_mask = rank < n_test[users]
    params = {
        "method": "random",
        "test_fraction": float(test_fraction),
        "min_train": int(min_train),
        "random_state": int(random_state) if isinstance(random_state, numbers.Integral) else None,
    }
    return _finish(data, test_mask, params, weighting)


def per_user_folds(
    data: pa.Table | Interactions,
    folds: int,
    fraction: float = 0.2,
    *,
    random_state: int | np.random.Generator | None = 0,
    min_train: int = 1,
    weighting: Weighting | None = None,
) -> list[Split]:
    """``folds`` per-user random holdouts of ``data`` whose test parts are disjoint.

    As :func:`random_split` draws them, one uniform key per input row, in row order; a user's
    ``n_u`` rows, ranked by key, give fold ``f`` the ranks ``f t_u .. (f + 1) t_u - 1`` for its
    test part, with ``t_u = min(floor(fraction * n_u + 0.5), (n_u - min_train) // folds)``
    (at least 0), so every fold holds out about ``fraction`` of each user's rows and keeps at
    least ``min_train`` in its train part. ``folds * fraction`` must not exceed 1. With
    ``folds=1`` this is :func:`random_split` with the same seed.
    """
    check_number("folds", folds, integer=True, low=1)
    check_number("fraction", fraction, low=0.0, high=1.0, low_inclusive=False)
    check_number("min_train", min_train, integer=True, low=0)
    if folds * fraction > 1 + 1e-12:
        raise ValueError(f"{folds} folds of {fraction:g} each would hold out more than everything")
    rng = check_random_state(random_state)
    if isinstance(data, Interactions):
        users, _, _ = _pairs(data)
    else:
        _check_events(data, CONTENT_COLUMNS)
        users = _codes(data.column("user_id"))
    keys = rng.random(len(users))
    counts = np.bincount(users)
    wanted = np.floor(fraction * counts + 0.5).astype(np.int64)
    per_fold = np.clip(np.minimum(wanted, (counts - min_train) // folds), 0, None)
    rank = _rank_within_user(users, counts, np.lexsort((keys, users)))
    size = per_fold[users]
    splits = []
    for fold in range(folds):
        test_mask = (rank >= fold * size) & (rank < (fold + 1) * size)
        params = {
            "method": "per_user_folds",
            "fold": fold,
            "folds": int(folds),
            "test_fraction": float(fraction),
            "min_train": int(min_train),
            "random_state": int(random_state) if isinstance(random_state, numbers.Integral) else None,
        }
        splits.append(_finish(data, test_mask, params, weighting))
    return splits


def leave_last_n_split(
    events: pa.Table,
    n: int = 1,
    *,
    min_train: int = 1,
    weighting: Weighting | None = None,
) -> Split:
    """Per user, the ``n`` newest events go to test (ties in time: the later row is newer).

    A user with ``n_u`` events holds out ``min(n, n_u - min_train)`` (at least 0): a user with
    at most ``n`` events keeps ``min_train`` of them (the oldest) in train and holds out the
    rest; one with ``n_u <= min_train`` keeps everything in train and is counted in
    ``users_without_test``.
    """
    check_number("n", n, integer=True, low=1)
    check_number("min_train", min_train, integer=True, low=0)
    _check_events(events, CONTENT_COLUMNS)
    users = _codes(events.column("user_id"))
    ts = timestamps_us(events.column("timestamp"))
    counts = np.bincount(users)
    n_test = np.clip(np.minimum(n, counts - min_train), 0, None)
    order = np.lexsort((np.arange(len(users)), ts, users))  # per user: oldest first
    from_newest = counts[users] - 1 - _rank_within_user(users, counts, order)
    test_mask = from_newest < n_test[users]
    params = {"method": "leave_last_n", "n": int(n), "min_train": int(min_train)}
    return _finish(events, test_mask, params, weighting)


def temporal_split(
    events: pa.Table,
    *,
    at: datetime | None = None,
    test_fraction: float | None = None,
    weighting: Weighting | None = None,
) -> Split:
    """Global temporal cut: events at or after the cut time go to test, earlier ones to train.

    Give exactly one of ``at`` (the cut time; naive datetimes are UTC) or ``test_fraction``
    (the cut is the timestamp of the event at position ``N - round(test_fraction * N)`` in time
    order, so that about that fraction of the ``N`` events is newer; events sharing the cut's
    timestamp all go to test, so the test part can be slightly larger). Every train event is
    strictly older than every test event. Per-user counts play no part: a user whose events
    all precede the cut is train-only (counted in ``users_without_test``), one whose events all
    follow it is test-only (reported in ``test_only_users``, its events dropped from test).
    """
    if (at is None) == (test_fraction is None):
        raise ValueError("give exactly one of at= (a cut time) or test_fraction=")
    _check_events(events, CONTENT_COLUMNS)
    ts = timestamps_us(events.column("timestamp"))
    if at is not None:
        if not isinstance(at, datetime):
            raise ValueError(f"at must be a datetime, got {at!r}")
        cut = to_us(at)
    else:
        check_number("test_fraction", test_fraction, low=0.0, high=1.0)
        n_test = round(float(test_fraction) * len(ts))  # type: ignore[arg-type]
        cut = int(np.sort(ts)[len(ts) - n_test]) if n_test else np.iinfo(np.int64).max
    test_mask = ts >= cut
    params: dict[str, Any] = {
        "method": "temporal",
        "cut": iso_from_us(cut) if cut != np.iinfo(np.int64).max else None,
        "test_fraction": None if test_fraction is None else float(test_fraction),
    }
    as_of = _time(cut) if cut != np.iinfo(np.int64).max else None
    return _finish(events, test_mask, params, weighting, as_of)


# building the parts -------------------------------------------------------------------------------
def _finish(
    data: pa.Table | Interactions,
    test_mask: np.ndarray,
    params: dict[str, Any],
    weighting: Weighting | None,
    as_of: datetime | None = None,
) -> Split:
    """The split's parts; ``as_of`` (default: the newest training event) is the time the train
    part's ages are measured from when the weighting sets none."""
    if isinstance(data, Interactions):
        return _split_interactions(data, test_mask, params)
    if as_of is None and not test_mask.all():
        as_of = _time(int(timestamps_us(data.column("timestamp"))[~test_mask].max()))
    return _split_events(data, test_mask, params, Weighting() if weighting is None else weighting, as_of)


def _split_events(
    events: pa.Table,
    test_mask: np.ndarray,
    params: dict[str, Any],
    weighting: Weighting,
    as_of: datetime | None,
) -> Split:
    train_events = events.filter(pa.array(~test_mask))
    test_events = events.filter(pa.array(test_mask))
    train = Interactions.from_events(train_events, weighting, as_of=as_of)
    test = Interactions.from_events(
        test_events, replace(weighting, half_life_days=None), users=train.users, items=train.items
    )
    user_known = train.users.lookup(test_events.column("user_id")) >= 0
    item_known = train.items.lookup(test_events.column("item_id")) >= 0
    all_users = _codes(events.column("user_id"))
    has_test = np.zeros(all_users.max() + 1 if len(all_users) else 0, dtype=bool)
    has_test[all_users[test_mask]] = True
    params = dict(params, weights=train.info.get("weights"), half_life_days=weighting.half_life_days)
    return Split(
        train=train,
        test=test,
        test_mask=test_mask,
        params=params,
        test_only_users=_distinct(test_events.column("user_id"), ~user_known),
        test_only_items=_distinct(test_events.column("item_id"), ~item_known),
        dropped_test=int(np.count_nonzero(~(user_known & item_known))),
        users_without_test=int(np.count_nonzero(~has_test)),
    )


def _split_interactions(data: Interactions, test_mask: np.ndarray, params: dict[str, Any]) -> Split:
    """Split the stored pairs of ``matrix`` and ``ratings`` alike (a pair's entries stay together)."""
    users, items, keys = _pairs(data)
    train_keys = keys[~test_mask]
    train_users = np.zeros(data.n_users, dtype=bool)
    train_users[users[~test_mask]] = True
    train_items = np.zeros(data.n_items, dtype=bool)
    train_items[items[~test_mask]] = True
    test_users, test_items = users[test_mask], items[test_mask]
    scorable = train_users[test_users] & train_items[test_items]
    kept_test_keys = keys[test_mask][scorable]

    def part(m: sp.csr_matrix | None, keep: np.ndarray) -> sp.csr_matrix | None:
        if m is None:
            return None
        mask = np.isin(_entry_keys(m), keep, assume_unique=True)
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        out = sp.csr_matrix((m.data[mask], (rows[mask], m.indices[mask])), shape=m.shape, dtype=np.float32)
        out.sort_indices()
        return out

    def build(keep: np.ndarray) -> Interactions:
        matrix = part(data.matrix, keep)
        assert matrix is not None
        return Interactions(matrix, data.users, data.items, part(data.ratings, keep), dict(data.info))

    has_test = np.zeros(data.n_users, dtype=bool)
    has_test[test_users] = True
    present = np.zeros(data.n_users, dtype=bool)
    present[users] = True
    return Split(
        train=build(train_keys),
        test=build(kept_test_keys),
        test_mask=test_mask,
        params=params,
        test_only_users=data.users.ids(np.unique(test_users[~train_users[test_users]])),
        test_only_items=data.items.ids(np.unique(test_items[~train_items[test_items]])),
        dropped_test=int(np.count_nonzero(~scorable)),
        users_without_test=int(np.count_nonzero(present & ~has_test)),
    )


# helpers ------------------------------------------------------------------------------------------
def _time(us: int) -> datetime:
    return datetime.fromtimestamp(0, UTC) + timedelta(microseconds=int(us))


def _check_events(events: object, columns: tuple[str, ...]) -> None:
    if not isinstance(events, pa.Table):
        raise TypeError(f"expected an event table (pyarrow.Table), got {type(events).__name__}")
    missing = [c for c in columns if c not in events.column_names]
    if missing:
        raise ValueError(f"the event table lacks column(s) {missing}")


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """Dense int64 codes of a string column (first-appearance order)."""
    if len(column) == 0:
        return np.zeros(0, dtype=np.int64)
    encoded = pc.dictionary_encode(column.combine_chunks())
    return np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)


def _distinct(column: pa.ChunkedArray, mask: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``column`` where ``mask``, as an object array of str."""
    values = pc.unique(column.filter(pa.array(mask)).combine_chunks())
    return np.asarray(pc.take(values, pc.sort_indices(values)).to_pylist(), dtype=object)


def _rank_within_user(users: np.ndarray, counts: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Position of each row within its user's rows, for an ``order`` sorted by user first."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(users), dtype=np.int64)
    rank[order] = np.arange(len(users)) - starts[users[order]]
    return rank


def _entry_keys(m: sp.csr_matrix) -> np.ndarray:
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return rows * m.shape[1] + m.indices


def _pairs(data: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users, items and row-major keys of the pairs stored in ``matrix`` or ``ratings``."""
    keys = _entry_keys(data.matrix)
    if data.ratings is not None:
        keys = np.union1d(keys, _entry_keys(data.ratings))
    return keys // max(data.n_items, 1), keys % max(data.n_items, 1), keys
