"""``--set KEY=VALUE``: a model's hyperparameters from the command line, no TOML file needed.

Each assignment sets ``[model.<name>] KEY`` for the command's model. ``VALUE`` is read as a TOML
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

__all__ = ["parse_assignments", "with_model_params"]


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


def with_model_params(config: Config, model: str, assignments: list[str]) -> Config:
    """A copy of ``config`` whose ``[model.<model>]`` holds the assignments too (checked)."""
    if not assignments:
        return config
    entry = MODELS.get(model)
    if entry is None:
        raise RecforgeError(f"unknown model {model!r}; available: {', '.join(MODELS)}")
    params = parse_assignments(assignments)
    valid = [p for p in inspect.signature(entry.cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        listed = ", ".join(valid) or "none"
        raise RecforgeError(f"unknown parameter {unknown[0]!r} for model {model}; valid: {listed}")
    updated = copy.deepcopy(config)
    merged = {**updated.model.params.get(model, {}), **params}
    try:
        entry.cls(**merged)._validate_params()
    except ValueError as error:
        raise RecforgeError(f"--set for model {model}: {error}") from None
    updated.model.params[model] = merged
    return updated


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text
