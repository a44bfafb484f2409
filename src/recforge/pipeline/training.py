"""Which model to fit, with which parameters, and the key that says "this fit was done before".

The model class comes from :data:`recforge.models.registry.MODELS` by name, its constructor
arguments from ``[model.<name>]`` in the config, so a new model or a tuned configuration needs
no change here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from recforge.config import Config
from recforge.errors import RecforgeError
from recforge.models.base import Recommender
from recforge.models.registry import MODELS

__all__ = ["make_model", "model_params", "train_key"]


def model_params(config: Config, name: str) -> dict[str, Any]:
    """``[model.<name>]`` from the config (empty when absent)."""
    return dict(config.model.params.get(name, {}))


def make_model(name: str, params: dict[str, Any] | None = None) -> Recommender:
    """An unfitted model of the registered class ``name``; a clear error for an unknown name or
    a parameter its constructor does not take."""
    entry = MODELS.get(name)
    if entry is None:
        raise RecforgeError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    try:
        return entry.cls(**(params or {}))
    except TypeError as error:
        raise RecforgeError(f"bad parameters for model {name!r} ([model.{name}]): {error}") from None


def train_key(build: str, name: str, params: dict[str, Any], config: Config) -> str:
    """A hash of everything a fit depends on: the data (the build's fingerprint), the model and
    its parameters, and the output-affecting settings. Equal keys: the same fit, not worth
    repeating."""
    blob = json.dumps(
        {"build": build, "model": name, "params": params, "config": config.output_hash()},
        sort_keys=True,
        default=str,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:20]
