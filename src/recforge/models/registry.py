"""Every model recforge knows, by name, with its default tuning search space: one explicit table.

``recforge train --model NAME``, ``[model] name``, ``recforge tune`` and loading a saved model
(its ``model.json`` names it) all look models up here. A model from outside the package
(a plugin, a test double) joins with an explicit :func:`register` call.

Default search spaces (``recforge.tune`` uses them unless given another):

========  ==================  =========================================================
model     parameter           range
========  ==================  =========================================================
als       ``factors``         4 .. 256, integer, log scale
als       ``regularization``  1e-4 .. 300, log scale (it matters as much as ``factors``; scaled
                              by ``(n + a0 n_other) ** nu`` with ``"frequency"``, hence the low end)
als       ``alpha``           0.1 .. 30, log scale (confidence ``c = 1 + alpha * r``)
als       ``iterations``      5 .. 40, integer, log scale
als       ``regularization_scaling``  ``"none"`` or ``"frequency"`` (Rendle et al. 2022)
als       ``regularization_exponent`` 0 .. 1 (``nu``; only with ``"frequency"``)
als       ``unobserved_weight``       0.001 .. 1, log scale (``a0``)
bpr       ``factors``         16 .. 256, integer, log scale
bpr       ``learning_rate``   0.003 .. 0.3, log scale
bpr       ``regularization``  1e-4 .. 0.3, log scale
bpr       ``iterations``      20 .. 200, integer, log scale
itemknn   ``neighbors``       5 .. 1000, integer, log scale
ease      ``regularization``  1 .. 100,000, log scale (it scales with the ``r`` values)
popular   (nothing to tune)
========  ==================  =========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recforge.models.als import ALS
from recforge.models.base import Recommender
from recforge.models.bpr import BPR
from recforge.models.ease import EASE
from recforge.models.itemknn import ItemKNN
from recforge.models.popular import Popular
from recforge.models.spaces import Choice, Dimension, Range

__all__ = ["MODELS", "ModelEntry", "automl_models", "default_search_space", "model_class", "register"]


@dataclass(frozen=True)
class ModelEntry:
    """A model class, its default search space (empty: nothing to tune), and whether
    ``tune(model="auto")`` searches it (``automl``)."""

    cls: type[Recommender]
    search_space: dict[str, Dimension] = field(default_factory=dict)
    automl: bool = False


#: The models by name (``Recommender.name``), in the order ``recforge`` prefers them.
MODELS: dict[str, ModelEntry] = {
    "als": ModelEntry(
        ALS,
        {
            "factors": Range(4, 256, log=True, integer=True),
            "regularization": Range(1e-4, 300.0, log=True),
            "alpha": Range(0.1, 30.0, log=True),
            "iterations": Range(5, 40, log=True, integer=True),
            "regularization_scaling": Choice(("none", "frequency")),
            "regularization_exponent": Range(0.0, 1.0),
            "unobserved_weight": Range(1e-3, 1.0, log=True),
        },
        automl=True,
    ),
    "itemknn": ModelEntry(ItemKNN, {"neighbors": Range(5, 1000, log=True, integer=True)}, automl=True),
    "ease": ModelEntry(EASE, {"regularization": Range(1.0, 1e5, log=True)}, automl=True),
    "bpr": ModelEntry(
        BPR,
        {
            "factors": Range(16, 256, log=True, integer=True),
            "learning_rate": Range(0.003, 0.3, log=True),
            "regularization": Range(1e-4, 0.3, log=True),
            "iterations": Range(20, 200, log=True, integer=True),
        },
        automl=True,
    ),
    "popular": ModelEntry(Popular),
}


def register(cls: type[Recommender], space: dict[str, Dimension] | None = None) -> type[Recommender]:
    """Add a model class under its ``name`` (replacing one of the same name); returns it."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name to register it under")
    MODELS[cls.name] = ModelEntry(cls, dict(space or {}))
    return cls


def model_class(name: str) -> type[Recommender]:
    """The class registered as ``name``; ``ValueError`` listing the known names otherwise."""
    entry = MODELS.get(name)
    if entry is None:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return entry.cls


def automl_models() -> list[str]:
    """The models ``tune(model="auto")`` searches, in table order."""
    return [name for name, entry in MODELS.items() if entry.automl]


def default_search_space(name: str) -> dict[str, Dimension]:
    """A copy of the default search space of ``name`` (empty when it has none)."""
    entry = MODELS.get(name)
    return dict(entry.search_space) if entry is not None else {}
