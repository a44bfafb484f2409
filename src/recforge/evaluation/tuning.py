"""Automatic tuning: Optuna's TPE over a model's hyperparameters, scored on a validation holdout.

::

    result = recforge.tune("als", train=train, validation=validation, k=10, metric="ndcg", trials=30)
    model = ALS(**result.best_params).fit(everything_but_the_test_part)

**A trial** draws a value for every dimension of the search space, builds the model from those
values and ``fixed_params`` (constructor arguments held fixed), fits it on ``train`` and scores
it with an :class:`~recforge.evaluation.Evaluator` on ``validation``: the model's own
``recommend`` with seen items filtered (the path that produces the served lists), then NDCG@k,
MAP@k and ``metric`` averaged over the validation users. The trial's value is ``metric`` of the
fitted model; the study maximises it.

**Pruning.** Iterative models (``ALS``, ``BPR``) call the fit callback after each iteration;
there (:meth:`Evaluator.callback`) the trial scores the current model and reports the score
to Optuna as the intermediate value of step ``iteration``; when the pruner says the trial is
doing worse than earlier trials did at the same iteration, the fit stops and the trial ends as
*pruned*. The default pruner is Optuna's median rule: once 5 trials have completed, a trial
whose score after its 4th or a later iteration is below the median of the earlier trials'
scores at that iteration is pruned. (Not earlier: strongly regularised ALS starts slowly and
ends best; pruning after the 2nd iteration cut exactly those on ml-100k.)

**Sampler.** Multivariate TPE (one joint density over all dimensions, so that regularisation
and ``alpha``, which act together, are modelled together), the first ``startup_trials``
drawn at random. On ml-100k with 16 trials it chose better configurations than independent
TPE (``BENCHMARKS.md``, Tuning).

**Search spaces**: the default per model is declared beside it, in
:data:`recforge.models.registry.MODELS` (its docstring lists them); ``search_space=`` replaces
it. A dimension is a :class:`~recforge.models.spaces.Range` or a
:class:`~recforge.models.spaces.Choice`.

**Preprocessing.** ``train`` may be a :class:`Preprocessing` instead of data: an object with
its own ``search_space`` that builds each trial's training data from the values drawn for it
(:class:`WeightingSpace` tunes the event-type weights and the half-life this way). Those
values are reported in ``TuneResult.best_preprocessing``, apart from the constructor arguments.

**Persistence.** With ``storage`` (a file path: SQLite; or any SQLAlchemy URL Optuna accepts)
the study is stored there under ``study_name`` and a later call with the same storage and
name continues it: ``trials`` more trials, and the result covers all of them. The study records
its setup (model, metric, k, search space, fixed parameters, a fingerprint of the data); a call
whose setup differs raises ``ValueError`` rather than mixing incomparable trials.

**Seeds.** TPE is seeded from ``random_state`` and the number of trials the study already
holds (a resumed study does not replay its first random points), and a model that takes a
``random_state`` gets ``random_state`` unless ``fixed_params`` sets one, so a trial's score
depends on its parameters only: the same call gives the same trials.

Optuna is an optional dependency (``pip install recforge[tune]``), imported when a study starts.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
import scipy.sparse as sp

from recforge._progress import progress
from recforge.data.interactions import Interactions
from recforge.evaluation.metrics import METRICS
from recforge.evaluation.protocol import Evaluator
from recforge.models.base import Recommender, as_interactions
from recforge.models.registry import MODELS, default_search_space, model_class
from recforge.models.spaces import Choice, Dimension, Range, SearchSpace
from recforge.weighting import Weighting

if TYPE_CHECKING:
    import optuna

    from recforge.data.reweighting import Reweighter

__all__ = [
    "Preprocessing",
    "TrialResult",
    "TuneResult",
    "WeightingSpace",
    "tune",
]

Data: TypeAlias = Interactions | sp.spmatrix | sp.sparray


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
        return _fingerprint(self.reweighter.build(self.weighting).matrix)


# results --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialResult:
    """One trial: ``state`` is ``"complete"``, ``"pruned"``, ``"fail"`` or ``"running"``;
    ``params`` the values drawn (model and preprocessing); ``scores`` the validation metrics
    (``ndcg``, ``map``, ...) of the fitted model (for a pruned trial: where it was stopped);
    ``iteration`` the iterations it ran (``None`` for models without iterations); ``curve``
    the ``(iteration, metric)`` points reported for pruning."""

    number: int
    state: str
    params: dict[str, Any]
    scores: dict[str, float]
    iteration: int | None
    duration: float | None
    value: float | None
    curve: tuple[tuple[int, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "state": self.state,
            "params": self.params,
            "scores": self.scores,
            "iteration": self.iteration,
            "duration": self.duration,
            "value": self.value,
            "curve": [list(point) for point in self.curve],
        }


@dataclass(frozen=True)
class TuneResult:
    """What :func:`tune` found. ``best_params``: the constructor arguments of the best complete
    trial (the tuned ones and ``fixed_params``, with the ``random_state`` the trials used), so
    ``model_class(model)(**best_params)`` is the tuned model; ``best_preprocessing``:
    the preprocessing values of that trial; ``best_score``: its ``metric``; ``best_scores``:
    all its validation metrics (NDCG and MAP among them); ``trials``: every trial of the
    study, this call's and earlier ones'."""

    model: str
    metric: str
    k: int
    best_params: dict[str, Any]
    best_preprocessing: dict[str, Any]
    best_score: float
    best_scores: dict[str, float]
    best_trial: int
    trials: tuple[TrialResult, ...]
    study_name: str | None = None
    storage: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def make_model(self) -> Recommender:
        """An unfitted model with :attr:`best_params`."""
        return model_class(self.model)(**self.best_params)

    def top(self, n: int | None = None) -> list[TrialResult]:
        """The complete trials, best first (ties: the earlier trial first)."""
        done = [t for t in self.trials if t.state == "complete" and t.value is not None]
        ranked = sorted(done, key=lambda t: (-float(t.value or 0.0), t.number))
        return ranked if n is None else ranked[:n]

    def count(self, state: str) -> int:
        """How many trials ended in ``state``."""
        return sum(t.state == state for t in self.trials)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "model": self.model,
                "metric": self.metric,
                "k": self.k,
                "best_params": self.best_params,
                "best_preprocessing": self.best_preprocessing,
                "best_score": self.best_score,
                "best_scores": self.best_scores,
                "best_trial": self.best_trial,
                "trials": [t.to_dict() for t in self.trials],
                "study_name": self.study_name,
                "storage": self.storage,
                "info": self.info,
            }
        )


# the entry point ------------------------------------------------------------------------------------
def tune(
    model: str = "als",
    *,
    train: Data | Preprocessing,
    validation: Data,
    k: int = 10,
    metric: str = "ndcg",
    trials: int | None = 20,
    timeout: float | None = None,
    random_state: int | None = 0,
    search_space: SearchSpace | None = None,
    fixed_params: Mapping[str, Any] | None = None,
    storage: str | Path | None = None,
    study_name: str | None = None,
    prune: bool | optuna.pruners.BasePruner = True,
    startup_trials: int = 6,
    min_rating: float | None = None,
    report_every: int = 1,
    initial_params: Sequence[Mapping[str, Any]] = (),
    show_progress: bool | None = None,
) -> TuneResult:
    """Tune ``model``'s hyperparameters on ``validation`` (see the module doc).

    ``train``: the data every trial fits on (``Interactions`` or a users x items sparse matrix),
    or a :class:`Preprocessing` that builds it per trial. ``validation``: the held-out part, with
    the same users and items (relevant items: its positive entries, or with ``min_rating`` its
    ratings at or above it, as :class:`Evaluator` has it). ``metric`` (NDCG by default) is
    maximised; ``ndcg`` and ``map`` are always recorded. ``trials`` new trials are run, or as
    many as fit in ``timeout`` seconds (a running trial is finished), whichever ends first.
    ``startup_trials``: trials drawn at random before TPE models the results. ``prune``: True
    for the median rule (module doc), False for none, or an Optuna pruner. ``report_every``:
    score iterative models every this many iterations. ``initial_params``: parameter sets to
    try first in a new study (e.g. the current configuration), each a mapping over the search
    space's names. ``show_progress``: a progress bar (default: when stderr is a terminal).

    Bad arguments raise ``ValueError`` naming them; a missing Optuna raises ``ImportError``
    saying how to install it.
    """
    cls = _model_class(model)
    name = cls.name
    _check_int("k", k, low=1)
    scorable = [m for m in METRICS if m != "coverage"]
    if metric not in scorable:
        raise ValueError(f"metric must be one of {scorable}, got {metric!r}")
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
    _check_int("report_every", report_every, low=1)

    constructor = _constructor_params(cls)
    space = dict(default_search_space(name) if search_space is None else search_space)
    fixed = dict(fixed_params or {})
    _check_space(space, fixed, constructor, name)
    preprocessing = train if isinstance(train, Preprocessing) else None
    pre_space = dict(preprocessing.search_space) if preprocessing is not None else {}
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
    injected: dict[str, Any] = {}
    if "random_state" in constructor and "random_state" not in fixed and "random_state" not in space:
        injected["random_state"] = random_state

    data = None if preprocessing is not None else as_interactions(train)
    probe = preprocessing.build({}) if preprocessing is not None else data
    assert probe is not None
    metrics = tuple(dict.fromkeys(("ndcg", "map", metric)))
    evaluator = Evaluator(probe, validation, k, min_rating=min_rating, metrics=metrics)
    if len(evaluator.users) == 0:
        raise ValueError("validation has no relevant items for users of train: nothing to score")

    setup = _jsonable(
        {
            "model": name,
            "metric": metric,
            "k": int(k),
            "min_rating": min_rating,
            "search_space": {key: d.describe() for key, d in sorted(every_space.items())},
            "fixed_params": fixed,
            "train": preprocessing.fingerprint() if preprocessing is not None else _fingerprint(probe.matrix),
            "validation": f"{_fingerprint(evaluator.relevant)}:{len(evaluator.users)}",
        }
    )
    objective = _Objective(
        cls, space, pre_space, {**injected, **fixed}, preprocessing, data, evaluator, metric, report_every
    )

    optuna = _import_optuna()
    storage_url = _storage_url(storage)
    if storage_url is not None and study_name is None:
        study_name = name
    study = optuna.create_study(
        storage=storage_url,
        study_name=study_name,
        direction="maximize",
        load_if_exists=storage_url is not None,
        pruner=_pruner(optuna, prune),
    )
    _check_setup(study, storage_url, setup)
    seed = None
    if random_state is not None:
        seed = int(np.random.SeedSequence([random_state, len(study.trials)]).generate_state(1)[0])
    with warnings.catch_warnings():  # multivariate TPE is "experimental" in Optuna < 4
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup_trials, multivariate=True
        )
    if not study.trials:
        for point in initial_params:
            study.enqueue_trial(dict(point))

    with progress(f"tuning {name}", total=trials, enabled=show_progress) as bar:
        study.optimize(
            objective, n_trials=trials, timeout=timeout, callbacks=[lambda study, trial: bar.advance()]
        )
    return _result(study, name, metric, int(k), {**injected, **fixed}, set(pre_space), storage_url, setup)


# the objective ------------------------------------------------------------------------------------
class _Objective:
    """Fit and score one trial (see the module doc)."""

    def __init__(
        self,
        cls: type[Recommender],
        space: dict[str, Dimension],
        pre_space: dict[str, Dimension],
        fixed: dict[str, Any],
        preprocessing: Preprocessing | None,
        data: Interactions | None,
        evaluator: Evaluator,
        metric: str,
        report_every: int,
    ) -> None:
        self.cls = cls
        self.space = space
        self.pre_space = pre_space
        self.fixed = fixed
        self.preprocessing = preprocessing
        self.data = data
        self.evaluator = evaluator
        self.metric = metric
        self.report_every = report_every

    def _evaluator(self, train: Interactions) -> Evaluator:
        """The validation evaluator for ``train``. Its relevant sets leave out the pairs seen in
        training, so it depends on ``train``'s pattern only, not on the values: the shared one
        serves whenever ``train`` stores the same pairs (a reweighting changes values only,
        unless it weighs a pair down to 0), else one is built for ``train``'s pairs."""
        shared = self.evaluator
        seen, m = _matrix_of(shared.train), train.matrix
        if (
            seen.nnz == m.nnz
            and np.array_equal(seen.indptr, m.indptr)
            and np.array_equal(seen.indices, m.indices)
        ):
            return shared
        return Evaluator(train, shared.test, shared.k, min_rating=shared.min_rating, metrics=shared.metrics)

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        pre_values = {key: d.suggest(trial, key) for key, d in self.pre_space.items()}
        values = {key: d.suggest(trial, key) for key, d in self.space.items()}
        if self.preprocessing is not None:
            train = self.preprocessing.build(pre_values)
        else:
            assert self.data is not None
            train = self.data
        evaluator = self._evaluator(train)
        model = self.cls(**{**self.fixed, **values})
        pruned: list[int] = []

        def on_score(iteration: int, scores: dict[str, float]) -> bool:
            trial.report(scores[self.metric], iteration)
            if trial.should_prune():
                pruned.append(iteration)
                return True
            return False

        callback = evaluator.callback(on_score, every=self.report_every)
        model.fit(train, callback=callback)
        history = callback.history
        trial.set_user_attr("curve", [[i, s[self.metric]] for i, s in history])
        ran = getattr(model, "iterations", None) if not pruned else pruned[0]
        iteration: int | None = int(ran) if isinstance(ran, numbers.Integral) else None
        # the last iteration's scores, else (no iterations: ItemKNN; report_every > 1) score now
        last = history[-1] if history and history[-1][0] == iteration else None
        scores = last[1] if last is not None else evaluator.score(model)
        trial.set_user_attr("scores", scores)
        trial.set_user_attr("iteration", iteration)
        if pruned:
            raise optuna.TrialPruned(f"pruned at iteration {pruned[0]}")
        return scores[self.metric]


# helpers --------------------------------------------------------------------------------------------
def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as error:  # pragma: no cover - optuna is installed where the tests run
        raise ImportError(
            "recforge.tune needs Optuna: pip install 'recforge[tune]' (or pip install optuna)"
        ) from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _model_class(model: str | type[Recommender]) -> type[Recommender]:
    if isinstance(model, type) and issubclass(model, Recommender) and model.name:
        return model
    if not isinstance(model, str) or model not in MODELS:
        raise ValueError(f"model must be a registered model name ({', '.join(MODELS)}), got {model!r}")
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


def _storage_url(storage: str | Path | None) -> str | None:
    if storage is None:
        return None
    text = str(storage)
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _check_setup(study: Any, storage: str | None, setup: dict[str, Any]) -> None:
    """Record ``setup`` in a new study; in a resumed one, raise unless it is the recorded one."""
    recorded = study.user_attrs.get("setup")
    if recorded is None:
        study.set_user_attr("setup", setup)
    elif recorded != setup:
        differ = sorted(key for key in set(recorded) | set(setup) if recorded.get(key) != setup.get(key))
        raise ValueError(
            f"study {study.study_name!r} in {storage} was set up with another {', '.join(differ)}; its "
            "trials are not comparable with this call's: use another study name"
        )


def _pruner(optuna: Any, prune: bool | Any) -> Any:
    if prune is True:
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=4)
    if prune is False:
        return optuna.pruners.NopPruner()
    if isinstance(prune, optuna.pruners.BasePruner):
        return prune
    raise ValueError(f"prune must be True, False or an optuna pruner, got {prune!r}")


def _result(
    study: Any,
    name: str,
    metric: str,
    k: int,
    fixed: dict[str, Any],
    pre_names: set[str],
    storage: str | None,
    setup: dict[str, Any],
) -> TuneResult:
    import optuna

    trials = tuple(
        TrialResult(
            number=t.number,
            state=t.state.name.lower(),
            params=dict(t.params),
            scores=dict(t.user_attrs.get("scores", {})),
            iteration=t.user_attrs.get("iteration"),
            curve=tuple((int(i), float(v)) for i, v in t.user_attrs.get("curve", [])),
            duration=t.duration.total_seconds() if t.duration is not None else None,
            value=t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
        )
        for t in study.get_trials(deepcopy=False)
    )
    complete = [t for t in trials if t.state == "complete" and t.value is not None]
    if not complete:
        raise RuntimeError(f"no trial of study {study.study_name!r} completed; nothing to choose from")
    best = max(complete, key=lambda t: (float(t.value or 0.0), -t.number))
    return TuneResult(
        model=name,
        metric=metric,
        k=k,
        best_params={**fixed, **{key: v for key, v in best.params.items() if key not in pre_names}},
        best_preprocessing={key: v for key, v in best.params.items() if key in pre_names},
        best_score=float(best.value or 0.0),
        best_scores=best.scores,
        best_trial=best.number,
        trials=trials,
        study_name=study.study_name if storage is not None else None,
        storage=storage,
        info={"setup": setup},
    )


def _fingerprint(m: sp.spmatrix | sp.sparray) -> str:
    """A short hash of a sparse matrix's shape, pattern and values."""
    csr = sp.csr_matrix(m)
    digest = hashlib.sha256(json.dumps(list(csr.shape)).encode())
    for array in (csr.indptr, csr.indices, csr.data):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    """Plain JSON values (numpy scalars and dtypes as Python numbers and names)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, type | np.dtype):
        return np.dtype(value).name
    return value


def _matrix_of(data: Any) -> sp.csr_matrix:
    return data.matrix if isinstance(data, Interactions) else sp.csr_matrix(data)
