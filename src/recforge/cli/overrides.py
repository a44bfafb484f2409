"""``--set KEY=VALUE`` (and ``tune --fix``): a model's hyperparameters from the command line, no
TOML file needed.

Each assignment sets ``[model.<name>] KEY`` for the command's model (or models: ``NAME.KEY``
targets one of them). ``VALUE`` is read as a TOML
value when it is one (``128``, ``0.5``, ``true``, ``"cg"``), else taken as a string (``cg``).
An unknown ``KEY`` is an error that lists the model's parameters; a value the model rejects is
an error naming it, before any work starts.
"""

from __future__ import annotations

import copy
import inspect
import tomllib
from typing import Any

from recforge.config import Config
from recforge.errors import RecforgeError
from recforge.models.registry import MODELS

__all__ = ["assigned_params", "parse_assignments", "with_params_for"]


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """``["factors=128", "solver=cg"]`` as ``{"factors": 128, "solver": "cg"}``."""
    params: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RecforgeError(f"--set expects KEY=VALUE, got {assignment!r}")
        params[key] = _value(text.strip())
    return params


def with_params_for(config: Config, models: list[str], assignments: list[str]) -> Config:
    """A copy of ``config`` whose ``[model.<name>]`` tables hold the assignments too (checked;
    see :func:`assigned_params`)."""
    if not assignments:
        return config
    updated = copy.deepcopy(config)
    for name, params in assigned_params(config, models, assignments).items():
        updated.model.params.setdefault(name, {}).update(params)
    return updated


def assigned_params(config: Config, models: list[str], assignments: list[str]) -> dict[str, dict[str, Any]]:
    """The assignments per model, checked against ``config``'s parameters of each.

    ``KEY=VALUE`` goes to every model in ``models`` that takes ``KEY`` (an error when none
    does); ``NAME.KEY=VALUE`` to the model ``NAME`` only."""
    for name in models:
        if name not in MODELS:
            raise RecforgeError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    valid = {name: _parameters(name) for name in models}
    assigned: dict[str, dict[str, Any]] = {}
    for key, value in parse_assignments(assignments).items():
        target, _, leaf = key.rpartition(".")
        if target and target not in valid:
            raise RecforgeError(f"--set {key}: {target!r} is not one of the models ({', '.join(models)})")
        takers = [target] if target else [name for name in models if leaf in valid[name]]
        if not takers or leaf not in valid[takers[0]]:
            where = target or models[0]
            listed = ", ".join(valid[where]) or "none"
            raise RecforgeError(f"unknown parameter {leaf!r} for model {where}; valid: {listed}")
        for name in takers:
            assigned.setdefault(name, {})[leaf] = value
    for name, params in assigned.items():
        try:
            MODELS[name].cls(**{**config.model.params.get(name, {}), **params})._validate_params()
        except ValueError as error:
            raise RecforgeError(f"--set for model {name}: {error}") from None
    return assigned


def _parameters(model: str) -> list[str]:
    return [p for p in inspect.signature(MODELS[model].cls.__init__).parameters if p != "self"]


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text
