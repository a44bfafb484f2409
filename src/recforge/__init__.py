"""recforge: a recommendation system from raw events to a served, monitored API.

The names below are imported on first use (PEP 562), so that a process which needs one small
module (the impression writer process, a CLI subcommand) does not pay for numba and the models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from recforge._version import __version__

if TYPE_CHECKING:
    from recforge.catalog import Catalog
    from recforge.data import Interactions, Vocabulary
    from recforge.evaluation import tune
    from recforge.models import ALS, BPR, EASE, ItemKNN, Popular, Recommender
    from recforge.topk import recommend_all, similar_items_all
    from recforge.weighting import Weighting

_HOMES = {
    "ALS": "recforge.models",
    "BPR": "recforge.models",
    "EASE": "recforge.models",
    "Catalog": "recforge.catalog",
    "Interactions": "recforge.data",
    "ItemKNN": "recforge.models",
    "Popular": "recforge.models",
    "Recommender": "recforge.models",
    "Vocabulary": "recforge.data",
    "Weighting": "recforge.weighting",
    "recommend_all": "recforge.topk",
    "similar_items_all": "recforge.topk",
    "tune": "recforge.evaluation",
}

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "Catalog",
    "Interactions",
    "ItemKNN",
    "Popular",
    "Recommender",
    "Vocabulary",
    "Weighting",
    "__version__",
    "recommend_all",
    "similar_items_all",
    "tune",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'recforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
