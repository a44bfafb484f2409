"""One model's Optuna study over validation folds: the trial objective, pruning, and its results.

:func:`recforge.tune` (:mod:`recforge.evaluation.tuning`) checks the arguments and prepares the
folds; :func:`run_study` runs one model's study over them and returns a :class:`TuneResult`.

**A trial** draws a value for every dimension of the search space, builds the model from those
values and the fixed parameters, and for each :class:`Fold` fits it on the fold's training part
and scores it with the fold's :class:`~recforge.evaluation.Evaluator`: the model's own
``recommend`` with seen items filtered (the path that produces the served lists). A trial's
scores are the means over the folds of every metric (its ``spread``: their standard deviation
across folds, ``ddof=1``); its value, which the study maximises, the mean of the first metric.

**Pruning** (Optuna's median rule, :func:`pruner`): iterative models (``ALS``, ``BPR``) report
the first fold's score every few iterations (step = the iteration; every iteration up to 16
iterations, so that a fit reports about ``REPORTS_PER_FIT`` times: each report costs a scoring
and, in a stored study, a database write); a trial whose score after its 4th or a later
iteration is below the median of the earlier trials' at that iteration stops (not earlier:
strongly regularised ALS starts slowly and ends best). After each fold but
the last, the mean so far is reported at step ``FOLD_STEP + fold``: a trial whose first folds
already fall below the median of the earlier trials' same folds stops there. The rule waits for
5 complete trials.

**Seeds.** TPE (multivariate: one joint density, so that regularisation and ``alpha``, which act
together, are modelled together) is seeded from the caller's seed and the number of trials the
study already holds (a resumed study does not replay its first random points).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from recforge._progress import progress
from recforge.data.interactions import Interactions
from recforge.evaluation.protocol import Evaluator
from recforge.models.base import Recommender
from recforge.models.registry import model_class
from recforge.models.spaces import Dimension

if TYPE_CHECKING:
    import optuna

__all__ = [
    "FOLD_STEP",
    "Fold",
    "TrialResult",
    "TuneResult",
    "fingerprint",
    "import_optuna",
    "jsonable",
    "pruner",
    "run_study",
    "storage_url",
]

#: Pruning step of the end of fold ``f``: ``FOLD_STEP + f`` (iterations report steps below it).
FOLD_STEP = 1_000_000
#: Iterative models report about this many scores per fit unless told how often.
REPORTS_PER_FIT = 16


@dataclass(frozen=True)
class Fold:
    """One validation fold: the training part (``None`` when a preprocessing builds it per
    trial) and the evaluator of its held-out part."""

    train: Interactions | None
    evaluator: Evaluator


# results --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialResult:
    """One trial of model ``model``: ``state`` is ``"complete"``, ``"pruned"``, ``"fail"`` or
    ``"running"``; ``params`` the values drawn (model and preprocessing); ``scores`` the
    validation metrics (``ndcg``, ``map``, ...), means over the folds scored (for a pruned
    trial: where it was stopped); ``spread`` their standard deviation across folds (empty with
    one fold); ``folds`` each fold's scores; ``iteration`` the iterations it ran on the first
    fold (``None`` for models without iterations); ``curve`` the ``(iteration, metric)`` points
    reported for pruning."""

    number: int
    state: str
    params: dict[str, Any]
    scores: dict[str, float]
    iteration: int | None
    duration: float | None
    value: float | None
    curve: tuple[tuple[int, float], ...] = ()
    model: str = ""
    spread: dict[str, float] = field(default_factory=dict)
    folds: tuple[dict[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "model": self.model,
            "state": self.state,
            "params": self.params,
            "scores": self.scores,
            "spread": self.spread,
            "folds": list(self.folds),
            "iteration": self.iteration,
            "duration": self.duration,
            "value": self.value,
            "curve": [list(point) for point in self.curve],
        }


@dataclass(frozen=True)
class TuneResult:
    """What :func:`recforge.tune` found. ``best_params``: the constructor arguments of the best
    complete trial (the tuned ones and the fixed ones, with the ``random_state`` the trials
    used), so ``model_class(model)(**best_params)`` is the tuned model; ``best_preprocessing``:
    the preprocessing values of that trial; ``best_score``: its ``metric`` (the first of
    ``metrics``, the one maximised); ``best_scores``: all its validation metrics (NDCG and MAP
    among them), means over the folds; ``best_spread``: their standard deviation across folds;
    ``trials``: every trial of the study, this call's and earlier ones'. With
    ``model="auto"``, ``model`` is the winning family and ``families`` holds each family's own
    result (its winner, its trials); ``trials`` then holds all of them, each naming its model.
    ``seconds``: the wall time of the call."""

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
    metrics: tuple[str, ...] = ()
    best_spread: dict[str, float] = field(default_factory=dict)
    folds: int = 1
    families: dict[str, TuneResult] = field(default_factory=dict)
    seconds: float = 0.0

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
        return jsonable(
            {
                "model": self.model,
                "metric": self.metric,
                "metrics": list(self.metrics),
                "k": self.k,
                "folds": self.folds,
                "best_params": self.best_params,
                "best_preprocessing": self.best_preprocessing,
                "best_score": self.best_score,
                "best_scores": self.best_scores,
                "best_spread": self.best_spread,
                "best_trial": self.best_trial,
                "seconds": self.seconds,
                "families": {name: _family_summary(r) for name, r in self.families.items()},
                "trials": [t.to_dict() for t in self.trials],
                "study_name": self.study_name,
                "storage": self.storage,
                "info": self.info,
            }
        )


def _family_summary(result: TuneResult) -> dict[str, Any]:
    return {
        "best_params": result.best_params,
        "best_score": result.best_score,
        "best_scores": result.best_scores,
        "best_spread": result.best_spread,
        "best_trial": result.best_trial,
        "trials": len(result.trials),
        "complete": result.count("complete"),
        "pruned": result.count("pruned"),
        "seconds": result.seconds,
    }


# the objective ------------------------------------------------------------------------------------
class _Objective:
    """Fit and score one trial on every fold (see the module doc)."""

    def __init__(
        self,
        cls: type[Recommender],
        space: Mapping[str, Dimension],
        pre_space: Mapping[str, Dimension],
        fixed: dict[str, Any],
        preprocessing: Any,
        folds: Sequence[Fold],
        metric: str,
        report_every: int | None,
    ) -> None:
        self.cls = cls
        self.space = space
        self.pre_space = pre_space
        self.fixed = fixed
        self.preprocessing = preprocessing
        self.folds = folds
        self.metric = metric
        self.report_every = report_every

    @staticmethod
    def _evaluator(shared: Evaluator, train: Interactions) -> Evaluator:
        """The fold's evaluator for ``train``. Its relevant sets leave out the pairs seen in
        training, so it depends on ``train``'s pattern only, not on the values: the shared one
        serves whenever ``train`` stores the same pairs (a reweighting changes values only,
        unless it weighs a pair down to 0), else one is built for ``train``'s pairs."""
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
        per_fold: list[dict[str, float]] = []
        for number, fold in enumerate(self.folds):
            train = self.preprocessing.build(pre_values) if self.preprocessing is not None else fold.train
            assert train is not None
            evaluator = self._evaluator(fold.evaluator, train)
            model = self.cls(**{**self.fixed, **values})
            if number == 0:
                scores, pruned_at = self._fit_first(trial, model, train, evaluator)
            else:
                model.fit(train)
                scores, pruned_at = evaluator.score(model), None
            per_fold.append(scores)
            self._record(trial, per_fold)
            if pruned_at is not None:
                raise optuna.TrialPruned(f"pruned at iteration {pruned_at}")
            if number < len(self.folds) - 1:
                trial.report(_means(per_fold)[self.metric], FOLD_STEP + number)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after fold {number + 1} of {len(self.folds)}")
        return _means(per_fold)[self.metric]

    def _fit_first(
        self, trial: optuna.Trial, model: Recommender, train: Interactions, evaluator: Evaluator
    ) -> tuple[dict[str, float], int | None]:
        """Fit on the first fold, reporting each iteration's score; ``(scores, pruned_at)``."""
        pruned: list[int] = []

        def on_score(iteration: int, scores: dict[str, float]) -> bool:
            trial.report(scores[self.metric], iteration)
            if trial.should_prune():
                pruned.append(iteration)
                return True
            return False

        every = self.report_every
        if every is None:  # about REPORTS_PER_FIT reports: each costs a scoring (and a database write)
            iterations = getattr(model, "iterations", None)
            every = max(1, -(-int(iterations) // REPORTS_PER_FIT)) if isinstance(iterations, int) else 1
        callback = evaluator.callback(on_score, every=every)
        model.fit(train, callback=callback)
        history = callback.history
        trial.set_user_attr("curve", [[i, s[self.metric]] for i, s in history])
        ran = getattr(model, "iterations", None) if not pruned else pruned[0]
        iteration: int | None = int(ran) if isinstance(ran, int | np.integer) else None
        trial.set_user_attr("iteration", iteration)
        # the last iteration's scores, else (no iterations: ItemKNN; report_every > 1) score now
        last = history[-1] if history and history[-1][0] == iteration else None
        return (last[1] if last is not None else evaluator.score(model)), (pruned[0] if pruned else None)

    @staticmethod
    def _record(trial: optuna.Trial, per_fold: list[dict[str, float]]) -> None:
        trial.set_user_attr("scores", _means(per_fold))
        trial.set_user_attr("folds", per_fold)
        if len(per_fold) > 1:
            trial.set_user_attr("spread", _spread(per_fold))


def _means(per_fold: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([fold[key] for fold in per_fold])) for key in per_fold[0]}


def _spread(per_fold: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {key: float(np.std([fold[key] for fold in per_fold], ddof=1)) for key in per_fold[0]}


# running a study --------------------------------------------------------------------------------------
def run_study(
    cls: type[Recommender],
    space: Mapping[str, Dimension],
    pre_space: Mapping[str, Dimension],
    fixed: dict[str, Any],
    preprocessing: Any,
    folds: Sequence[Fold],
    *,
    metrics: tuple[str, ...],
    k: int,
    trials: int | None,
    timeout: float | None,
    seed: int | None,
    setup: dict[str, Any],
    storage: str | None,
    study_name: str | None,
    prune: Any,
    startup_trials: int,
    report_every: int | None,
    initial_params: Sequence[Mapping[str, Any]],
    patience: int | None,
    show_progress: bool | None,
) -> TuneResult:
    """Run (or continue) one model's study over ``folds`` for ``trials`` trials or ``timeout``
    seconds, whichever ends first (a running trial is finished), or until ``patience``
    trials in a row have not improved on the best; return its :class:`TuneResult`. ``setup``
    describes what makes trials comparable (a stored study must have been set up alike)."""
    started = time.perf_counter()
    optuna = import_optuna()
    name = cls.name
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="maximize",
        load_if_exists=storage is not None,
        pruner=pruner(optuna, prune),
    )
    _check_setup(study, storage, setup)
    if seed is not None:
        seed = int(np.random.SeedSequence([seed, len(study.trials)]).generate_state(1)[0])
    with warnings.catch_warnings():  # multivariate TPE is "experimental" in Optuna < 4
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup_trials, multivariate=True
        )
    if not study.trials:
        for point in initial_params:
            study.enqueue_trial(dict(point))
    objective = _Objective(cls, space, pre_space, fixed, preprocessing, folds, metrics[0], report_every)
    callbacks: list[Callable[[Any, Any], None]] = []
    if patience is not None:
        callbacks.append(_Patience(patience))
    with progress(f"tuning {name}", total=trials, enabled=show_progress) as bar:
        callbacks.append(lambda study, trial: bar.advance())
        study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=callbacks)
    result = _result(study, name, metrics, k, fixed, set(pre_space), storage, setup, len(folds))
    return replace(result, seconds=time.perf_counter() - started)


class _Patience:
    """Stop the study once ``patience`` trials in a row have not improved on the best."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def __call__(self, study: Any, trial: Any) -> None:
        import optuna

        done = [t for t in study.trials if t.state.is_finished()]
        complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            return
        best = max(complete, key=lambda t: (t.value, -t.number))
        if sum(t.number > best.number for t in done) >= self.patience:
            study.stop()


def _result(
    study: Any,
    name: str,
    metrics: tuple[str, ...],
    k: int,
    fixed: dict[str, Any],
    pre_names: set[str],
    storage: str | None,
    setup: dict[str, Any],
    n_folds: int,
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
            model=name,
            spread=dict(t.user_attrs.get("spread", {})),
            folds=tuple(dict(f) for f in t.user_attrs.get("folds", [])),
        )
        for t in study.get_trials(deepcopy=False)
        if t.state != optuna.trial.TrialState.WAITING  # enqueued, never run (a study stopped early)
    )
    complete = [t for t in trials if t.state == "complete" and t.value is not None]
    if not complete:
        raise RuntimeError(f"no trial of study {study.study_name!r} completed; nothing to choose from")
    best = max(complete, key=lambda t: (float(t.value or 0.0), -t.number))
    return TuneResult(
        model=name,
        metric=metrics[0],
        metrics=metrics,
        k=k,
        folds=n_folds,
        best_params={**fixed, **{key: v for key, v in best.params.items() if key not in pre_names}},
        best_preprocessing={key: v for key, v in best.params.items() if key in pre_names},
        best_score=float(best.value or 0.0),
        best_scores=best.scores,
        best_spread=best.spread,
        best_trial=best.number,
        trials=trials,
        study_name=study.study_name if storage is not None else None,
        storage=storage,
        info={"setup": setup},
    )


# helpers --------------------------------------------------------------------------------------------
def import_optuna() -> Any:
    """Optuna, quiet; an ``ImportError`` saying how to install it when it is missing."""
    try:
        import optuna
    except ImportError as error:  # pragma: no cover - optuna is installed where the tests run
        raise ImportError(
            "recforge.tune needs Optuna: pip install 'recforge[tune]' (or pip install optuna)"
        ) from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def pruner(optuna: Any, prune: bool | Any) -> Any:
    """The pruner ``prune`` stands for: the median rule (``True``, module doc), none
    (``False``), or the Optuna pruner given."""
    if prune is True:
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=4)
    if prune is False:
        return optuna.pruners.NopPruner()
    if isinstance(prune, optuna.pruners.BasePruner):
        return prune
    raise ValueError(f"prune must be True, False or an optuna pruner, got {prune!r}")


def storage_url(storage: str | Path | None) -> str | None:
    """A SQLAlchemy URL for ``storage``: a URL as given, a file path as SQLite (its directory
    made); ``None`` for an in-memory study."""
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


def fingerprint(m: sp.spmatrix | sp.sparray) -> str:
    """A short hash of a sparse matrix's shape, pattern and values."""
    csr = sp.csr_matrix(m)
    digest = hashlib.sha256(json.dumps(list(csr.shape)).encode())
    for array in (csr.indptr, csr.indices, csr.data):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def jsonable(value: Any) -> Any:
    """Plain JSON values (numpy scalars and dtypes as Python numbers and names)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, type | np.dtype):
        return np.dtype(value).name
    return value


def _matrix_of(data: Any) -> sp.csr_matrix:
    return data.matrix if isinstance(data, Interactions) else sp.csr_matrix(data)
