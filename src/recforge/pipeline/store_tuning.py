"""``recforge tune``: tune a model and the event weighting on a holdout of the stored events.

The stored events are split as ``recforge evaluate`` splits them (a temporal holdout: a fraction,
a span or a cut time; or a per-user random holdout); the held-out part is the validation set.
Preprocessing is part of the model, so besides the model's hyperparameters the study searches
the half-life and the event-type weights (:class:`~recforge.evaluation.WeightingSpace`): each
trial rebuilds ``r_ui`` from the training events held in memory
(:class:`~recforge.data.reweighting.Reweighter`), never re-reading the store.

The configuration in use is the first trial of a new study (its model parameters and weights,
moved into the search space), so the best configuration is never worse than it on validation.
Parameters of ``[model.<name>]`` outside the search space are held fixed. With ``model="auto"``
every family of :func:`recforge.tune`'s AutoML is searched, each from its own ``[model.<name>]``
(their studies ``<study>.<family>`` in one file). Studies live in ``<home>/tuning/<study>.db``
(SQLite); running again with the same study name continues it.

:func:`tuned_config` renders the best configuration as a TOML config file that
``recforge train --config`` accepts (``recforge --config FILE build`` applies its weights).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from recforge._time import parse_time
from recforge.config import Config, WeightingConfig
from recforge.data.reweighting import Reweighter
from recforge.data.schema import CONTENT_COLUMNS
from recforge.data.store import EventStore
from recforge.errors import RecforgeError
from recforge.evaluation.splits import Split, random_split
from recforge.evaluation.tuning import AUTO, TuneResult, WeightingSpace, tune
from recforge.models.registry import automl_models, default_search_space
from recforge.models.spaces import Choice, Range
from recforge.pipeline.holdout import Holdout, holdout_from_config, parse_duration, split_events
from recforge.pipeline.training import make_model, model_params
from recforge.weighting import Weighting

__all__ = ["StoreTuning", "study_path", "tune_store", "tuned_config"]

_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class StoreTuning:
    """A tuning run on the stored events: the result, the split it validated on, the weighting
    space (``None`` when neither weights nor half-life were tuned), its seconds."""

    result: TuneResult
    split: dict[str, Any]
    weighting: WeightingSpace | None
    study: str
    path: Path
    seconds: float

    def best_weighting(self) -> Weighting:
        """The best trial's weighting."""
        assert self.weighting is not None
        return self.weighting.settings(self.result.best_preprocessing)


def study_path(home: str | Path, study: str) -> Path:
    """``<home>/tuning/<study>.db``; the name must be a plain file name."""
    if not _STUDY_NAME.match(study):
        raise RecforgeError(
            f"study name {study!r} must be letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return Path(home) / "tuning" / f"{study}.db"


def tune_store(
    home: str | Path,
    config: Config,
    *,
    model: str | None = None,
    holdout: Holdout | None = None,
    per_user: float | None = None,
    seed: int = 0,
    trials: int | None = None,
    timeout: float | None = None,
    k: int | None = None,
    metric: str = "ndcg",
    study: str | None = None,
    restart: bool = False,
    tune_weights: bool = True,
    tune_half_life: bool = True,
    random_state: int = 0,
    show_progress: bool | None = None,
    hold: Mapping[str, Mapping[str, Any]] | None = None,
) -> StoreTuning:
    """Tune ``model`` (default ``[model] name``; ``"auto"``: across model families) on a holdout
    of the stored events (see the module doc): the temporal ``holdout`` (default
    ``[pipeline]``'s), or with ``per_user`` a per-user random holdout of that fraction of each
    user's events (seeded by ``seed``). ``trials=None``: as many as fit in ``timeout``
    (default ``[pipeline] tune_budget``). ``hold``: per model family, parameters held at these
    values (taken out of its search space; ``recforge tune --fix``)."""
    name = model or config.model.name
    families = automl_models() if name == AUTO else [name]
    for family in families:
        try:  # a clear error for an unknown model, or a parameter it does not take or accept
            make_model(family, model_params(config, family))._validate_params()
        except ValueError as error:
            raise RecforgeError(f"[model.{family}]: {error}") from None
    if trials is None and timeout is None:
        timeout = parse_duration(config.pipeline.tune_budget)
    if holdout is not None and per_user is not None:
        raise RecforgeError("give a temporal holdout or a per-user fraction, not both")
    if per_user is not None and not 0.0 < per_user < 1.0:
        raise RecforgeError(f"the per-user holdout fraction must lie in (0, 1), got {per_user}")
    study = study or name
    path = study_path(home, study)
    if restart and path.exists():
        path.unlink()

    events = EventStore(home).scan(CONTENT_COLUMNS, skip_prefix=config.data.loadtest_prefix)
    if events.num_rows == 0:
        raise RecforgeError("no events to tune on; ingest some first")
    # as the splits do, ages are measured from the end of the training part (the cut), not
    # [weighting]'s reference_time
    weighting = replace(config.weighting.value(), reference_time=None)
    split: Split
    if per_user is not None:
        split = random_split(events, per_user, random_state=seed, weighting=weighting)
    else:
        split = split_events(events, holdout or holdout_from_config(config), config)
    train_events = events.filter(~split.test_mask)

    weights_space: WeightingSpace | None = None
    current_weights: dict[str, Any] = {}
    if tune_weights or tune_half_life:
        reweighter = Reweighter(
            train_events,
            users=split.train.users,
            items=split.train.items,
            as_of=parse_time(split.train.info["as_of"]),
        )
        weights_space = WeightingSpace(
            reweighter, weighting, tune_weights=tune_weights, tune_half_life=tune_half_life
        )
        current_weights = weights_space.current()
        if not weights_space.search_space:
            weights_space = None
    fixed, initial, spaces = {}, {}, {}
    for family in families:
        held = dict((hold or {}).get(family, {}))
        spaces[family] = {k: v for k, v in default_search_space(family).items() if k not in held}
        fixed[family], point = current_configuration(config, family)
        fixed[family].update(held)
        initial[family] = [{**{k: v for k, v in point.items() if k not in held}, **current_weights}]
    started = time.perf_counter()
    try:
        result = tune(
            name,
            train=weights_space if weights_space is not None else split.train,
            validation=split.test,
            k=config.pipeline.k if k is None else k,
            metric=metric,
            trials=trials,
            timeout=timeout,
            random_state=random_state,
            search_space=spaces if name == AUTO else spaces[name],
            fixed_params=fixed if name == AUTO else fixed[name],
            storage=path,
            study_name=study,
            initial_params=initial if name == AUTO else initial[name],
            show_progress=show_progress,
        )
    except ValueError as error:
        if "not comparable" in str(error):
            raise RecforgeError(f"{error} (or --restart to start it over)") from None
        raise
    return StoreTuning(result, split.summary(), weights_space, study, path, time.perf_counter() - started)


def current_configuration(config: Config, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model ``name``'s configuration in use, split for tuning: the ``[model.<name>]``
    parameters outside its search space (held fixed) and the point of the search space nearest
    its current parameters (tried first)."""
    space = default_search_space(name)
    current = model_params(config, name)
    fixed = {key: value for key, value in current.items() if key not in space}
    defaults = make_model(name, current).get_params()
    return fixed, {key: _nearest(dimension, defaults[key]) for key, dimension in space.items()}


def tuned_config(config: Config, tuning: StoreTuning) -> str:
    """The best configuration as a TOML config file: ``home``, ``[weighting]`` (tuned weights
    and half-life), ``[model]`` name and ``[model.<name>]`` parameters. Other settings are left
    to their defaults or to another config file."""
    result = tuning.result
    tuned = config.weighting
    if tuning.weighting is not None:
        tuned = WeightingConfig.from_value(tuning.best_weighting())
    scores = ", ".join(f"{key} {value:.4f}" for key, value in result.best_scores.items())
    lines = [
        f"# recforge tune: study {tuning.study!r}, {result.model} trial {result.best_trial} of "
        f"{len(result.trials)}",
        f"# validation @{result.k}: {scores}",
        *(
            f"# best {family}: {result.metric} {found.best_score:.4f}"
            for family, found in result.families.items()
        ),
        "# Build with it before training, so the weights apply: recforge --config FILE build",
        f"home = {_toml(config.home)}",
        "",
        "[weighting]",
        f"weights = {_toml(dict(tuned.weights))}",
        f"half_life_days = {_toml(float(tuned.half_life_days))}",
        f"reference_time = {_toml(config.weighting.reference_time)}",
        "",
        "[model]",
        f"name = {_toml(result.model)}",
        "",
        f"[model.{result.model}]",
    ]
    for key, value in result.best_params.items():
        if value is not None:  # TOML has no null: None is the constructor default anyway
            lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _nearest(dimension: Range | Choice, value: Any) -> Any:
    if isinstance(dimension, Range):
        return dimension.clip(value)
    return value if value in dimension.options else dimension.options[0]


def _toml(value: Any) -> str:
    """A TOML value: str, bool, int, finite float, numpy scalar or dtype, or a flat table."""
    if hasattr(value, "item") and not isinstance(value, Mapping):  # numpy scalar
        value = value.item()
    if isinstance(value, type):
        import numpy as np

        value = np.dtype(value).name
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecforgeError(f"cannot write {value} to a config file")
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    if hasattr(value, "name"):  # numpy dtype
        return _toml(str(value.name))
    raise RecforgeError(f"cannot write {value!r} to a config file")
