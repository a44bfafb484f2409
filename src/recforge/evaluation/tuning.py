"""Automatic tuning: Optuna's TPE over a model's hyperparameters, scored on validation folds.

::

    result = recforge.tune("als", train=train, k=10, metric="ndcg,map", trials=None, timeout=300)
    model = result.make_model().fit(train)

**The objective.** Each trial is fitted and scored on ``K`` validation folds and the mean of the
first metric is maximised (every metric's mean is recorded, with its spread across folds):
a validation split of a few hundred users with a few positives each cannot tell neighbouring
configurations apart, the mean over folds can better. With ``validation`` given, that part is
the one fold. Without it, ``train`` itself is split into ``folds`` per-user folds
(:func:`~recforge.evaluation.splits.per_user_folds`: each holds out ``validation_fraction`` of
every user's pairs, the held-out parts disjoint, each fold's model fitted on the rest), by
default 3 when ``train`` has at most ``SMALL_DATA_PAIRS`` stored pairs and 1 above (each fold
costs a fit). A trial (:mod:`recforge.evaluation.study`) fits the model on each fold's training
part and scores it there with an :class:`~recforge.evaluation.Evaluator`: the model's own
``recommend`` with seen items filtered (the path that produces the served lists).

**The budget.** ``trials`` new trials are run, or as many as fit in ``timeout`` seconds (a
running trial is finished), whichever ends first; ``trials=None`` runs until the timeout.
``patience`` ends the study early once that many trials in a row have not improved on the
best. Poor trials are pruned per iteration and fold by fold (:mod:`recforge.evaluation.study`).

**Several metrics.** ``metric`` is one name or several (``"ndcg,map"`` or a sequence): the first
is maximised, all are reported (NDCG and MAP always are).

**Across families** (``model="auto"``): every model the registry marks for it
(:func:`~recforge.models.registry.automl_models`: ALS, ItemKNN, EASE, BPR) gets its own study
over its own search space, on the same folds, one after the other; each gets an equal share of
``timeout`` plus what the family before it left unused (through ``trials`` or ``patience``), or
``trials`` trials each. A family's last trial may run past its share (a running trial is
finished); that overrun is not taken from the families after it, so the call can end that much
after ``timeout``. Each family's first trial is its constructor's defaults unless
``initial_params`` gives others. The best family's best configuration wins;
``TuneResult.families`` holds each family's winner. A family whose model refuses the data
(EASE above its ``max_items``) is skipped, and ``info["skipped"]`` says why. ``search_space``,
``fixed_params`` and ``initial_params`` are then mappings by family name.

**Search spaces**: the default per model is declared beside it, in
:data:`recforge.models.registry.MODELS` (its docstring lists them); ``search_space=`` replaces
it. A dimension is a :class:`~recforge.models.spaces.Range` or a
:class:`~recforge.models.spaces.Choice`.

**Preprocessing.** ``train`` may be a :class:`Preprocessing` instead of data: an object with
its own ``search_space`` that builds each trial's training data from the values drawn for it
(:class:`WeightingSpace` tunes the event-type weights and the half-life this way); it needs a
``validation`` part. Those values are reported in ``TuneResult.best_preprocessing``, apart from
the constructor arguments.

**Persistence.** With ``storage`` (a file path: SQLite; or any SQLAlchemy URL Optuna accepts)
the study is stored there under ``study_name`` (with ``"auto"``, one study per family,
``<study_name>.<family>``) and a later call with the same storage and name continues it. The
study records its setup (model, metrics, k, search space, fixed parameters, fingerprints of the
data and folds); a call whose setup differs raises ``ValueError`` rather than mixing
incomparable trials.

**Seeds.** ``random_state`` seeds the folds, TPE, and every model that takes a
``random_state`` (unless ``fixed_params`` sets one), so a trial's score depends on its
parameters only: the same call gives the same trials.

Optuna is an optional dependency (``pip install recforge[tune]``), imported when a study starts.
"""

from __future__ import annotations

import inspect
import numbers
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.evaluation.metrics import METRICS
from recforge.evaluation.protocol import Evaluator
from recforge.evaluation.splits import per_user_folds
from recforge.evaluation.study import (
    Fold,
    TrialResult,
    TuneResult,
    fingerprint,
    jsonable,
    run_study,
    storage_url,
)
from recforge.models.base import Recommender, as_interactions
from recforge.models.registry import MODELS, automl_models, default_search_space, model_class
from recforge.models.spaces import Choice, Dimension, Range, SearchSpace
from recforge.weighting import Weighting

if TYPE_CHECKING:
    from recforge.data.reweighting import Reweighter

__all__ = [
    "AUTO",
    "SMALL_DATA_FOLDS",
    "SMALL_DATA_PAIRS",
    "Preprocessing",
    "TrialResult",
    "TuneResult",
    "WeightingSpace",
    "default_folds",
    "parse_metrics",
    "tune",
]

Data: TypeAlias = Interactions | sp.spmatrix | sp.sparray

#: The model name that searches every family (``tune(model=AUTO)``).
AUTO = "auto"
#: Data with at most this many stored pairs is small: ``SMALL_DATA_FOLDS`` folds by default.
SMALL_DATA_PAIRS = 1_000_000
SMALL_DATA_FOLDS = 3


# preprocessing --------------------------------------------------------------------------------------
@runtime_checkable
class Preprocessing(Protocol):
    """Builds a trial's training data from the preprocessing values drawn for it.

    ``search_space`` names the preprocessing dimensions (they must not clash with the model's
    constructor arguments); ``build(values)`` returns the training interactions for them, with
    the same users and items as the validation part; ``fingerprint()`` identifies the data
    (a resumed study checks it).
    """

    search_space: SearchSpace

    def build(self, values: Mapping[str, Any]) -> Interactions: ...

    def fingerprint(self) -> str: ...


class WeightingSpace:
    """Event-type weights and half-life as tuning dimensions, over a :class:`Reweighter`.

    Dimensions: ``half_life_days`` (log scale, ``span / 50 .. span * 20`` days for the span of
    the events; at the top end the oldest event still weighs 0.97: no decay, in effect) when
    ``tune_half_life``; ``weight.<type>`` for each event type but the most frequent (log scale,
    ``w / 10 .. w * 10`` around its weight in ``weighting``) when ``tune_weights``. The most
    frequent type keeps its weight: scaling every weight alike is the model's job (ALS's
    ``alpha``), not a dimension of its own. Types weighted 0 stay 0. Whatever is not tuned
    (and the reference time) comes from ``weighting``.
    """

    def __init__(
        self,
        reweighter: Reweighter,
        weighting: Weighting,
        *,
        tune_weights: bool = True,
        tune_half_life: bool = True,
    ) -> None:
        self.reweighter = reweighter
        self.weighting = weighting
        space: dict[str, Dimension] = {}
        span = reweighter.span_days
        if tune_half_life and span > 0:
            space["half_life_days"] = Range(span / 50.0, span * 20.0, log=True)
        if tune_weights:
            for name in reweighter.event_types[1:]:
                weight = weighting.weights.get(name, 1.0)
                if weight > 0:
                    space[f"weight.{name}"] = Range(weight / 10.0, weight * 10.0, log=True)
        self.search_space: SearchSpace = space

    def settings(self, values: Mapping[str, Any]) -> Weighting:
        """The :class:`Weighting` that ``values`` (a trial's draw) stand for."""
        weights = dict(self.weighting.weights)
        for name, value in values.items():
            if name.startswith("weight."):
                weights[name.removeprefix("weight.")] = float(value)
        half_life = values.get("half_life_days", self.weighting.half_life_days)
        return replace(self.weighting, weights=weights, half_life_days=half_life)

    def current(self) -> dict[str, float]:
        """The point of the search space nearest ``weighting`` (no decay: the longest
        half-life), to try first."""
        point: dict[str, float] = {}
        for key, dimension in self.search_space.items():
            assert isinstance(dimension, Range)
            if key == "half_life_days":
                half_life = self.weighting.half_life_days
                point[key] = dimension.clip(dimension.high if half_life is None else half_life)
            else:
                point[key] = dimension.clip(self.weighting.weights.get(key.removeprefix("weight."), 1.0))
        return point

    def build(self, values: Mapping[str, Any]) -> Interactions:
        return self.reweighter.build(self.settings(values))

    def fingerprint(self) -> str:
        return fingerprint(self.reweighter.build(self.weighting).matrix)


# the entry point ------------------------------------------------------------------------------------
def tune(
    model: str = "als",
    *,
    train: Data | Preprocessing,
    validation: Data | None = None,
    k: int = 10,
    metric: str | Sequence[str] = "ndcg",
    trials: int | None = 20,
    timeout: float | None = None,
    folds: int | None = None,
    validation_fraction: float = 0.2,
    random_state: int | None = 0,
    search_space: Mapping[str, Any] | None = None,
    fixed_params: Mapping[str, Any] | None = None,
    storage: str | Path | None = None,
    study_name: str | None = None,
    prune: Any = True,
    startup_trials: int = 6,
    min_rating: float | None = None,
    report_every: int | None = None,
    initial_params: Any = (),
    patience: int | None = None,
    show_progress: bool | None = None,
) -> TuneResult:
    """Tune ``model``'s hyperparameters (``"auto"``: across model families) on validation folds
    (see the module doc).

    ``train``: the data every trial fits on (``Interactions`` or a users x items sparse matrix),
    or a :class:`Preprocessing` that builds it per trial. ``validation``: a held-out part with the
    same users and items (relevant items: its positive entries, or with ``min_rating`` its
    ratings at or above it, as :class:`Evaluator` has it); without it, ``folds`` per-user folds
    of ``train`` (default :func:`default_folds`), each holding out ``validation_fraction`` of
    every user's pairs. ``metric``: the metric maximised, or several (``"ndcg,map"``: the first
    is maximised); ``ndcg`` and ``map`` are always recorded. ``trials`` new trials are run (per
    family with ``"auto"``), or as many as fit in ``timeout`` seconds, whichever ends first;
    ``trials=None`` means until the timeout. ``startup_trials``: trials drawn at random before
    TPE models the results. ``prune``: True for the median rule, False for none, or an Optuna
    pruner. ``report_every``: score iterative models every this many iterations (default:
    about 16 times per fit). ``patience``: stop after this many trials in a row without a
    better one. ``initial_params``: parameter sets to try first in a new study (e.g. the
    current configuration), each a mapping over the search space's names. ``show_progress``: a
    progress bar (default: when stderr is a terminal).

    Bad arguments raise ``ValueError`` naming them; a missing Optuna raises ``ImportError``
    saying how to install it.
    """
    started = time.perf_counter()
    metrics = parse_metrics(metric)
    _check_int("k", k, low=1)
    if trials is None and timeout is None:
        raise ValueError("give trials or timeout (or both): with neither the study would never end")
    if trials is not None:
        _check_int("trials", trials, low=1)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not timeout > 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if random_state is not None and (isinstance(random_state, bool) or not isinstance(random_state, int)):
        raise ValueError(f"random_state must be an int or None, got {random_state!r}")
    _check_int("startup_trials", startup_trials, low=0)
    if report_every is not None:
        _check_int("report_every", report_every, low=1)
    if patience is not None:
        _check_int("patience", patience, low=1)
    if folds is not None:
        _check_int("folds", folds, low=1)
    if validation is not None and folds not in (None, 1):
        raise ValueError(f"folds={folds} is for tuning without a validation part (the folds come from train)")
    one = None if model == AUTO else _model_class(model)
    families = automl_models() if one is None else [one.name]

    preprocessing = train if isinstance(train, Preprocessing) else None
    if preprocessing is not None and validation is None:
        raise ValueError("a Preprocessing needs a validation part (folds are cut from data, not from it)")
    data = None if preprocessing is not None else as_interactions(train)
    probe = preprocessing.build({}) if preprocessing is not None else data
    assert probe is not None
    if validation is None:
        folds = default_folds(probe) if folds is None else folds
    fold_list, fold_setup = _folds(
        data, probe, validation, folds or 1, validation_fraction, random_state, k, min_rating, metrics
    )
    plan = _Plan(
        metrics=metrics,
        k=int(k),
        trials=trials,
        prune=prune,
        startup_trials=startup_trials,
        report_every=report_every,
        patience=patience,
        show_progress=show_progress,
        pre_space=dict(preprocessing.search_space) if preprocessing is not None else {},
        preprocessing=preprocessing,
        folds=fold_list,
        fold_setup=fold_setup,
        min_rating=min_rating,
        random_state=random_state,
        storage=storage_url(storage),
    )
    if one is not None:
        name = one.name
        result = _tune_model(
            one,
            search_space,
            fixed_params,
            initial_params,
            plan,
            study_name=study_name or (name if plan.storage is not None else None),
            timeout=timeout,
            seed_offset=0,
        )
        return replace(result, seconds=time.perf_counter() - started)
    return _tune_families(
        families,
        _by_family("search_space", search_space, families),
        _by_family("fixed_params", fixed_params, families),
        _by_family("initial_params", initial_params or None, families),
        probe,
        plan,
        study_name=study_name or (AUTO if plan.storage is not None else None),
        timeout=timeout,
        started=started,
    )


def default_folds(train: Interactions) -> int:
    """``SMALL_DATA_FOLDS`` for data of at most ``SMALL_DATA_PAIRS`` stored pairs, else 1."""
    return SMALL_DATA_FOLDS if train.nnz <= SMALL_DATA_PAIRS else 1


def parse_metrics(metric: str | Sequence[str]) -> tuple[str, ...]:
    """``"ndcg,map"`` or ``["ndcg", "map"]`` as a tuple of known, scorable metric names
    (duplicates dropped, order kept: the first is the one maximised)."""
    names = metric.split(",") if isinstance(metric, str) else list(metric)
    cleaned = tuple(dict.fromkeys(str(n).strip() for n in names if str(n).strip()))
    scorable = [m for m in METRICS if m != "coverage"]
    bad = [m for m in cleaned if m not in scorable]
    if bad or not cleaned:
        raise ValueError(f"metric must be one of {scorable} (or several, comma-separated), got {metric!r}")
    return cleaned


# one model ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    """What every study of a :func:`tune` call shares: its settings, the folds, the storage."""

    metrics: tuple[str, ...]
    k: int
    trials: int | None
    prune: Any
    startup_trials: int
    report_every: int | None
    patience: int | None
    show_progress: bool | None
    pre_space: dict[str, Dimension]
    preprocessing: Preprocessing | None
    folds: list[Fold]
    fold_setup: dict[str, Any]
    min_rating: float | None
    random_state: int | None
    storage: str | None


def _tune_model(
    cls: type[Recommender],
    search_space: SearchSpace | None,
    fixed_params: Mapping[str, Any] | None,
    initial_params: Sequence[Mapping[str, Any]],
    plan: _Plan,
    *,
    study_name: str | None,
    timeout: float | None,
    seed_offset: int,
) -> TuneResult:
    """One model's study: its space and fixed parameters checked, its setup recorded."""
    name = cls.name
    pre_space = plan.pre_space
    constructor = _constructor_params(cls)
    space = dict(default_search_space(name) if search_space is None else search_space)
    fixed = dict(fixed_params or {})
    _check_space(space, fixed, constructor, name)
    for key, dimension in pre_space.items():
        if key in constructor:
            raise ValueError(f"preprocessing dimension {key!r} clashes with a {name} parameter")
        if not isinstance(dimension, Range | Choice):
            raise ValueError(f"preprocessing dimension {key!r} must be a Range or a Choice")
    if not space and not pre_space:
        raise ValueError(f"nothing to tune for {name}: it has no default search space; give search_space")
    every_space = {**pre_space, **space}
    for point in initial_params:
        unknown = sorted(set(point) - set(every_space))
        if unknown:
            raise ValueError(f"initial_params names {unknown}, not in the search space {sorted(every_space)}")
    _check_constructible(cls, space, fixed)
    if "random_state" in constructor and "random_state" not in fixed and "random_state" not in space:
        fixed = {"random_state": plan.random_state, **fixed}
    setup = jsonable(
        {
            "model": name,
            "metric": plan.metrics[0],
            "metrics": list(plan.metrics),
            "k": plan.k,
            "min_rating": plan.min_rating,
            "search_space": {key: d.describe() for key, d in sorted(every_space.items())},
            "fixed_params": fixed,
            **plan.fold_setup,
        }
    )
    seed = None if plan.random_state is None else plan.random_state + seed_offset
    return run_study(
        cls,
        space,
        pre_space,
        fixed,
        plan.preprocessing,
        plan.folds,
        metrics=plan.metrics,
        k=plan.k,
        trials=plan.trials,
        timeout=timeout,
        seed=seed,
        setup=setup,
        storage=plan.storage,
        study_name=study_name,
        prune=plan.prune,
        startup_trials=plan.startup_trials,
        report_every=plan.report_every,
        initial_params=initial_params,
        patience=plan.patience,
        show_progress=plan.show_progress,
    )


# across families ------------------------------------------------------------------------------------
def _tune_families(
    families: list[str],
    spaces: dict[str, Any],
    fixed: dict[str, Any],
    initial: dict[str, Any],
    probe: Interactions,
    plan: _Plan,
    *,
    study_name: str | None,
    timeout: float | None,
    started: float,
) -> TuneResult:
    """Each family's study in turn, on an equal share of the budget (module doc); a family
    given no ``initial_params`` first tries its constructor's defaults (moved into its space)."""
    skipped: dict[str, str] = {}
    searched = []
    for name in families:
        reason = _refusal(name, fixed.get(name) or {}, probe)
        if reason is None:
            searched.append(name)
        else:
            skipped[name] = reason
    results: dict[str, TuneResult] = {}
    shares: dict[str, float | None] = {}
    planned = None if timeout is None else float(timeout) / max(len(searched), 1)
    unused = 0.0
    for index, name in enumerate(searched):
        share = None if planned is None else planned + unused
        shares[name] = share
        results[name] = _tune_model(
            model_class(name),
            spaces.get(name),
            fixed.get(name),
            initial.get(name) or [_defaults(name, spaces.get(name), fixed.get(name) or {})],
            plan,
            study_name=None if study_name is None else f"{study_name}.{name}",
            timeout=share,
            seed_offset=index,
        )
        if share is not None:  # time left unused goes on; an overrun is not taken from the next
            unused = max(share - results[name].seconds, 0.0)
    if not results:
        raise ValueError(f"no model family could be tuned: {skipped}")
    # the best family by its best validation score; ties go to the earlier family in the table
    winner = max(results.values(), key=lambda r: (r.best_score, -searched.index(r.model)))
    trials = tuple(t for r in results.values() for t in r.trials)
    info = {
        **winner.info,
        "families": {name: r.best_score for name, r in results.items()},
        "shares": shares,
        "skipped": skipped,
    }
    return replace(winner, trials=trials, families=results, info=info, seconds=time.perf_counter() - started)


def _defaults(name: str, space: SearchSpace | None, fixed: Mapping[str, Any]) -> dict[str, Any]:
    """Model ``name``'s constructor defaults as a point of its search space (clipped into
    ranges; a default a choice lacks becomes its first option)."""
    defaults = model_class(name)(**fixed).get_params()
    point: dict[str, Any] = {}
    for key, dimension in (default_search_space(name) if space is None else space).items():
        value = defaults.get(key)
        if isinstance(dimension, Range):
            point[key] = dimension.clip(value) if isinstance(value, int | float) else dimension.low
        else:
            point[key] = value if value in dimension.options else dimension.options[0]
    return point


def _refusal(name: str, fixed: Mapping[str, Any], data: Interactions) -> str | None:
    """Why family ``name`` (with ``fixed``) cannot be fitted on ``data``, or ``None``: a model
    with a ``max_items`` cap (EASE) refuses a larger catalogue."""
    model = model_class(name)(**fixed)
    cap = getattr(model, "max_items", None)
    if isinstance(cap, int) and data.n_items > cap:
        return f"{data.n_items:,} items, above its max_items={cap:,}"
    return None


def _by_family(what: str, value: Any, families: list[str]) -> dict[str, Any]:
    """``value`` for ``model="auto"``: a mapping by family name (or nothing)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f'with model="auto", {what} must be a mapping by model name ({", ".join(families)})')
    unknown = sorted(set(value) - set(families))
    if unknown:
        raise ValueError(f"{what} names {unknown}, not model families of auto ({', '.join(families)})")
    return dict(value)


# folds ----------------------------------------------------------------------------------------------
def _folds(
    data: Interactions | None,
    probe: Interactions,
    validation: Data | None,
    n_folds: int,
    fraction: float,
    random_state: int | None,
    k: int,
    min_rating: float | None,
    metrics: tuple[str, ...],
) -> tuple[list[Fold], dict[str, Any]]:
    """The folds every trial is scored on, and their description for the study's setup."""
    scored = tuple(dict.fromkeys(("ndcg", "map", *metrics)))
    if validation is not None:
        evaluator = Evaluator(probe, validation, k, min_rating=min_rating, metrics=scored)
        folds = [Fold(data, evaluator)]
        describe = {"train": fingerprint(probe.matrix), "validation": _describe(evaluator)}
    else:
        assert data is not None
        splits = per_user_folds(data, n_folds, fraction, random_state=random_state)
        folds = [
            Fold(s.train, Evaluator(s.train, s.test, k, min_rating=min_rating, metrics=scored))
            for s in splits
        ]
        describe = {
            "train": fingerprint(data.matrix),
            "validation": f"{n_folds} per-user folds of {fraction:g}, seed {random_state}: "
            + " ".join(_describe(f.evaluator) for f in folds),
        }
    for number, fold in enumerate(folds):
        if len(fold.evaluator.users) == 0:
            where = "validation" if validation is not None else f"fold {number + 1} of {n_folds}"
            raise ValueError(f"{where} has no relevant items for users of train: nothing to score")
    return folds, describe


def _describe(evaluator: Evaluator) -> str:
    return f"{fingerprint(evaluator.relevant)}:{len(evaluator.users)}"


# argument checks ------------------------------------------------------------------------------------
def _model_class(model: str | type[Recommender]) -> type[Recommender]:
    if isinstance(model, type) and issubclass(model, Recommender) and model.name:
        return model
    if not isinstance(model, str) or model not in MODELS:
        raise ValueError(
            f"model must be a registered model name ({', '.join(MODELS)}) or {AUTO!r}, got {model!r}"
        )
    return model_class(model)


def _constructor_params(cls: type[Recommender]) -> dict[str, Any]:
    signature = inspect.signature(cls.__init__)
    return {p.name: p.default for p in signature.parameters.values() if p.name != "self"}


def _check_int(name: str, value: Any, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_space(
    space: dict[str, Any], fixed: dict[str, Any], constructor: dict[str, Any], name: str
) -> None:
    known = ", ".join(constructor) or "none"
    unknown = sorted(set(space) - set(constructor))
    if unknown:
        raise ValueError(f"search_space names {unknown}, not parameters of {name} ({known})")
    for key, dimension in space.items():
        if not isinstance(dimension, Range | Choice):
            raise ValueError(
                f"search_space[{key!r}] must be a Range or a Choice, got {dimension!r} "
                "(hold a parameter fixed with fixed_params)"
            )
    unknown = sorted(set(fixed) - set(constructor))
    if unknown:
        raise ValueError(f"fixed_params names {unknown}, not parameters of {name} ({known})")
    both = sorted(set(fixed) & set(space))
    if both:
        raise ValueError(f"fixed_params {both} are also in the search space; give each once")


def _check_constructible(cls: type[Recommender], space: dict[str, Dimension], fixed: dict[str, Any]) -> None:
    """Raise ``ValueError`` now, naming it, for a fixed parameter or range end the model rejects
    (rather than in the first trial, which a stored study would keep as failed)."""
    for end in (0, -1):
        point: dict[str, Any] = {}
        for key, d in space.items():
            if isinstance(d, Choice):
                point[key] = d.options[end]
            else:
                point[key] = int(d.low if end == 0 else d.high) if d.integer else (d.low, d.high)[end]
        try:
            cls(**{**fixed, **point})._validate_params()
        except ValueError as error:
            raise ValueError(f"{cls.name} rejects the tuning setup: {error}") from None
